# Set-up shared by scripts/test and scripts/run-example (sourced, not run).
#
#   need_system_packages PKG...   the Debian packages installed, or a stop with the command
#   start_database_servers KIND...  postgres / mysql started if down (root only)
#   ensure_venv DIR PYTHON REQ...  a virtualenv with REQ installed, or none at all
#
# Each prints only what a user needs; tool output goes to a log printed on failure.

setup_say() { printf '==> %s\n' "$*" >&2; }

# Runs "$@" with its output in a temporary log; prints the log only if it fails.
quietly() {
  local log status=0
  log=$(mktemp "${TMPDIR:-/tmp}/ods-setup.XXXXXX")
  "$@" >"$log" 2>&1 || status=$?
  if [ "$status" -ne 0 ]; then
    printf -- '--- output of: %s\n' "$*" >&2
    cat "$log" >&2
    printf -- '--- (exit status %s)\n' "$status" >&2
  fi
  rm -f "$log"
  return "$status"
}

# The packages of "$@" that dpkg does not list as installed.
missing_system_packages() {
  local pkg
  for pkg in "$@"; do
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null)" = installed ] || echo "$pkg"
  done
}

# Installs the Debian packages "$@" that are missing, as root with apt-get; otherwise
# prints the one command to run and fails, before anything else is created.
need_system_packages() {
  local missing
  if ! command -v dpkg-query >/dev/null 2>&1; then
    setup_say "Not a Debian system: make sure these (or your system's equivalents) are installed: $*"
    return 0
  fi
  missing=$(missing_system_packages "$@" | tr '\n' ' ')
  missing=${missing% }
  [ -n "$missing" ] || return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    printf 'Missing system packages: %s. Install them, then run this again:\n\n' "$missing" >&2
    printf '    sudo apt-get update && sudo apt-get install -y %s\n\n' "$missing" >&2
    return 1
  fi
  setup_say "Installing system packages: $missing"
  # shellcheck disable=SC2086  # missing is a list of package names
  quietly apt-get update -q &&
    DEBIAN_FRONTEND=noninteractive quietly apt-get install -y -q $missing || {
    echo "Installing $missing failed (output above)." >&2
    return 1
  }
}

# Starts the local PostgreSQL / MariaDB server named in "$@" when it does not answer on
# 127.0.0.1 (as root, with the Debian packages' commands); waits up to a minute for it.
start_database_servers() {
  local kind
  for kind in "$@"; do
    database_answers "$kind" && continue
    if [ "$(id -u)" != 0 ]; then
      continue  # the test run reports it unreachable, with what to do
    fi
    setup_say "Starting the $kind server"
    case $kind in
      postgres) quietly pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start ;;
      mysql) quietly start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd ;;
    esac || continue
    for _ in $(seq 60); do
      database_answers "$kind" && break
      sleep 1
    done
  done
}

database_answers() {
  case $1 in
    postgres) pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null ;;
    mysql) mariadb-admin -h 127.0.0.1 -u root status >/dev/null 2>&1 ;;
    *) return 0 ;;
  esac
}

# ensure_venv DIR PYTHON REQUIREMENT...: DIR is a virtualenv of PYTHON with the
# requirements (pip arguments) installed. Rebuilt when pyproject.toml or the requirements
# change. The stamp that marks it ready is written last; a failed or interrupted build
# removes DIR, so the next run starts over instead of using half an environment.
ensure_venv() {
  local venv=$1 python=$2
  shift 2
  local stamp
  stamp="$venv/.installed-$( (cat pyproject.toml; printf '%s\n' "$@") | cksum | cut -d' ' -f1)"
  [ -f "$stamp" ] && return 0
  setup_say "Creating $venv (Python $("$python" -c 'import platform; print(platform.python_version())')); its pip output is shown only if it fails"
  rm -rf "$venv"
  if quietly "$python" -m venv "$venv" &&
    quietly "$venv/bin/python" -m pip install --upgrade pip &&
    quietly "$venv/bin/python" -m pip install "$@"; then
    touch "$stamp"
    return 0
  fi
  rm -rf "$venv"
  echo "Setting up $venv failed (output above); nothing was kept, the next run starts over." >&2
  return 1
}
