from chat.agent import build_agent
from chat.model_choice import chosen_model, model_label
from chat.offline_model import OfflineModel


def test_without_api_key_the_offline_model_answers() -> None:
    assert isinstance(chosen_model({}), OfflineModel)
    assert isinstance(chosen_model({"OPENAI_API_KEY": "  "}), OfflineModel)
    assert "no API key" in model_label({})


def test_with_api_key_the_sdk_default_openai_model_is_used() -> None:
    assert chosen_model({"OPENAI_API_KEY": "sk-test"}) is None
    assert "(OpenAI)" in model_label({"OPENAI_API_KEY": "sk-test"})


def test_openai_model_names_the_model() -> None:
    env = {"OPENAI_API_KEY": "sk-test", "OPENAI_MODEL": "gpt-4.1-mini"}
    assert chosen_model(env) == "gpt-4.1-mini"
    assert model_label(env) == "gpt-4.1-mini (OpenAI)"


def test_agent_follows_the_environment(monkeypatch) -> None:
    assert isinstance(build_agent().model, OfflineModel)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_MODEL", "gpt-4.1-mini")
    assert build_agent().model == "gpt-4.1-mini"
    assert {tool.name for tool in build_agent().tools} >= {"current_time", "calculate"}
