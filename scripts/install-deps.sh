#!/usr/bin/env bash
# install-deps.sh — make sure the Debian packages emq needs to build and test
# are installed. Quiet when they all are. Otherwise, as root: apt-get update
# and install the missing ones; not root: print the command and exit 1.
#
#   scripts/install-deps.sh          (also: make deps)
set -euo pipefail

packages=(
    gcc make pkg-config             # build
    libc6-dev
    libzmq3-dev libczmq-dev         # sockets, event loop
    libmsgpack-dev                  # job payloads (msgpack-c)
    libbsd-dev                      # pidfile, setproctitle, strlcpy
    libsqlite3-dev                  # router storage
    libpq-dev                       # router storage on PostgreSQL (store = postgresql)
    postgresql                      # the tests and make bench start a server of their own
    libck-dev                       # router: compact job index (ck_hs)
    libinih-dev                     # config file
    libjansson-dev                  # JSON (status output, queues setting, etcd)
    libcurl4-openssl-dev            # emq-scheduler: etcd's JSON gateway
    libpython3-dev                  # python jobs: the embedded CPython (emq_python.so)
    python3-msgpack                 # python/emq: decoding job results
    python3-pytest                  # python/emq's tests
    libsystemd-dev                  # sd_notify: readiness, watchdog, reload
    systemd                         # systemd-analyze verify (the units' test)
    libedit-dev                     # emq-cli's shell: line editing, history
    libmicrohttpd-dev               # emq-web: the dashboard and /metrics over HTTP
    etcd-server                     # scheduler tests against a real etcd
    valgrind                        # make memcheck
    python3-prometheus-client       # tests: /metrics read by Prometheus's own parser
    chromium chromium-driver        # tests: the dashboard in a real (headless) browser
    python3-selenium                #   driven by Debian's /usr/bin/python3
    beanstalkd                      # make bench: the peer emq is measured against
    libfaketime                     # scheduler tests: a wall clock that steps
    clang libclang-rt-14-dev        # make fuzz: libFuzzer (clang -fsanitize=fuzzer)
)

missing=()
for package in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null || true)
    if [ "$status" != "installed" ]; then
        missing+=("$package")
    fi
done

[ ${#missing[@]} -eq 0 ] && exit 0

command="DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing packages: ${missing[*]}" >&2
    echo "install-deps: run as root:" >&2
    echo "    apt-get update && $command" >&2
    exit 1
fi
echo "install-deps: installing ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
