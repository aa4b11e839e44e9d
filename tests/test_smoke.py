import pytest

from openai_django_sessions import DjangoSession
from openai_django_sessions.models import AgentMessage, AgentSession

pytestmark = pytest.mark.django_db(transaction=True)


async def test_round_trip():
    s = DjangoSession("smoke")
    await s.add_items([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}])
    assert await s.get_items() == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    assert await s.get_items(1) == [{"role": "assistant", "content": "yo"}]
    assert await s.pop_item() == {"role": "assistant", "content": "yo"}
    assert await AgentSession.objects.acount() == 1
    await s.clear_session()
    assert await AgentMessage.objects.acount() == 0
    assert await AgentSession.objects.acount() == 0
