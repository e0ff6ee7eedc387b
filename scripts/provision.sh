#!/usr/bin/env bash
# Make sure a Docker engine answers and the base image python:3.11-slim exists.
#
# Idempotent: with both in place it only checks and exits (well under 2 s).
# As root on Debian it installs Debian's docker.io, starts dockerd in the
# background and, where the base image cannot be pulled, builds a stand-in
# from Debian's packages with debootstrap. Otherwise it says what to do.
# With --browser it also makes sure a headless chromium exists (the HTML
# report's tests open the page in it); with --podman, that rootful Podman
# serves the Docker API on $DSREPRO_PODMAN_SOCKET (/run/dsrepro-podman.sock)
# with the base image loaded; with --ssh, that an OpenSSH server exists (the
# tests start their own on loopback, to reach an engine by ssh://); with
# --registry, that Debian's docker-registry exists (the tests serve their own);
# with --slurm, that a one-node SLURM cluster answers (scripts/slurm.sh).
set -euo pipefail

BASE_IMAGE=${DSREPRO_BASE_IMAGE:-python:3.11-slim}
DOCKERD_LOG=${DSREPRO_DOCKERD_LOG:-/var/log/dsrepro-dockerd.log}
WAIT_SECONDS=${DSREPRO_DOCKERD_WAIT:-60}

say() { printf 'provision: %s\n' "$*"; }
die() { printf 'provision: error: %s\n' "$*" >&2; exit 1; }

engine_answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

is_root_on_debian() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }

# The first Debian mirror named by this machine's apt sources (deb822 or one-line format).
apt_mirror() {
  local uri=""
  if compgen -G '/etc/apt/sources.list.d/*.sources' >/dev/null; then
    uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources)
  fi
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) {print $i; exit}}' /etc/apt/sources.list)
  fi
  [ -n "$uri" ] || die "no Debian mirror found in /etc/apt/sources.list{,.d}"
  printf '%s\n' "$uri"
}

apt_install() {
  if [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e lock -e partial)" ]; then
    apt-get update -qq
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

ensure_engine() {
  if engine_answers; then return 0; fi
  if [ -n "${DOCKER_HOST:-}" ]; then
    die "no Docker engine answers at DOCKER_HOST=$DOCKER_HOST; start it or unset DOCKER_HOST"
  fi
  if ! is_root_on_debian; then
    die "no Docker engine answers. Start one (for example 'sudo systemctl start docker'), or run this script as root on Debian to install and start it"
  fi
  if ! command -v dockerd >/dev/null 2>&1; then
    say "installing Debian's docker.io"
    apt_install docker.io
  fi
  if ! command -v docker >/dev/null 2>&1; then
    die "docker.io installed but no docker client on PATH"
  fi
  say "starting dockerd (log: $DOCKERD_LOG)"
  mkdir -p "$(dirname "$DOCKERD_LOG")"
  nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
  local pid=$!
  local waited=0
  until engine_answers; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$DOCKERD_LOG" >&2 || true
      die "dockerd exited; see $DOCKERD_LOG"
    fi
    if [ "$waited" -ge "$((WAIT_SECONDS * 2))" ]; then
      tail -n 20 "$DOCKERD_LOG" >&2 || true
      die "dockerd did not answer within ${WAIT_SECONDS}s; see $DOCKERD_LOG"
    fi
    sleep 0.5
    waited=$((waited + 1))
  done
  say "dockerd is running (pid $pid, version $(docker version --format '{{.Server.Version}}'))"
}

build_stand_in() {
  local mirror rootfs ca
  is_root_on_debian || die "$BASE_IMAGE is absent and cannot be pulled; pull or load it, or run this script as root on Debian to build a stand-in"
  command -v debootstrap >/dev/null 2>&1 || { say "installing debootstrap"; apt_install debootstrap; }
  mirror=$(apt_mirror)
  rootfs=$(mktemp -d /tmp/dsrepro-rootfs.XXXXXX)
  say "building a stand-in $BASE_IMAGE from Debian bookworm (debootstrap, about a minute)"
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || { tail -n 20 "$rootfs.log" >&2; die "debootstrap failed"; }
  rm -f "$rootfs.log"
  # Behave like the official image: pip installs system-wide, `python` exists,
  # and pip trusts the same certificate authorities as this machine.
  rm -f "$rootfs"/usr/lib/python3.*/EXTERNALLY-MANAGED
  ln -sf python3 "$rootfs/usr/bin/python"
  ca=${DSREPRO_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
  mkdir -p "$rootfs/etc/ssl/certs"
  if [ -f "$ca" ]; then cp "$ca" "$rootfs/etc/ssl/certs/ca-certificates.crt"; fi
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV PIP_DISABLE_PIP_VERSION_CHECK=1' \
    --change 'CMD ["python3"]' \
    - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
  say "built stand-in $BASE_IMAGE"
}

ensure_base_image() {
  if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then return 0; fi
  say "$BASE_IMAGE is absent; trying to pull it"
  if timeout 30 docker pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
    say "pulled $BASE_IMAGE"
    return 0
  fi
  build_stand_in
}

PODMAN_SOCKET=${DSREPRO_PODMAN_SOCKET:-/run/dsrepro-podman.sock}
PODMAN_LOG=${DSREPRO_PODMAN_LOG:-/var/log/dsrepro-podman.log}

podman_answers() { curl -sf --unix-socket "$PODMAN_SOCKET" http://d/_ping >/dev/null 2>&1; }

# Rootful Podman serving the Docker API on $PODMAN_SOCKET, with the base image loaded from Docker.
ensure_podman() {
  if ! command -v podman >/dev/null 2>&1; then
    is_root_on_debian || die "no podman; install Debian's podman and catatonit"
    say "installing Debian's podman"
    apt_install podman catatonit uidmap curl
  fi
  command -v curl >/dev/null 2>&1 || apt_install curl
  if [ ! -f /etc/containers/containers.conf ] && [ "$(id -u)" = 0 ]; then
    # this machine may itself be a container: Podman's default rlimits would be refused
    local nofile; nofile=$(ulimit -Hn)
    mkdir -p /etc/containers
    printf '[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=4096:4096"]\n' \
      "$nofile" "$nofile" > /etc/containers/containers.conf
  fi
  if ! podman_answers; then
    say "starting podman system service on $PODMAN_SOCKET (log: $PODMAN_LOG)"
    nohup podman system service --time=0 "unix://$PODMAN_SOCKET" >>"$PODMAN_LOG" 2>&1 </dev/null &
    local waited=0
    until podman_answers; do
      [ "$waited" -lt 60 ] || die "podman system service did not answer; see $PODMAN_LOG"
      sleep 0.5; waited=$((waited + 1))
    done
  fi
  if ! podman image exists "$BASE_IMAGE"; then
    say "loading $BASE_IMAGE into podman"
    docker save "$BASE_IMAGE" | podman load -q >/dev/null
  fi
}

ensure_browser() {
  if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then return 0; fi
  is_root_on_debian || die "no chromium to open the HTML report with; install Debian's chromium package"
  say "installing Debian's chromium (headless browser for the HTML report's tests)"
  apt_install chromium
}

ensure_ssh() {
  if [ -x /usr/sbin/sshd ]; then return 0; fi
  is_root_on_debian || die "no sshd for the ssh:// engine tests; install Debian's openssh-server"
  say "installing Debian's openssh-server (the tests start their own sshd on loopback)"
  apt_install openssh-server openssh-client
}

ensure_registry() {
  if command -v docker-registry >/dev/null 2>&1; then return 0; fi
  is_root_on_debian || die "no docker-registry for the image cache tests; install Debian's docker-registry"
  say "installing Debian's docker-registry (the tests serve their own on loopback)"
  apt_install docker-registry
}

ensure_engine
ensure_base_image
for option in "$@"; do
  case "$option" in
    --browser) ensure_browser ;;
    --podman) ensure_podman ;;
    --ssh) ensure_ssh ;;
    --registry) ensure_registry ;;
    --slurm) bash "$(dirname "$0")/slurm.sh" ;;
    *) die "unknown option $option (known: --browser, --podman, --ssh, --registry, --slurm)" ;;
  esac
done
