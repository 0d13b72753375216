#!/usr/bin/env bash
# Install the real servers opsgate's own tests start (PostgreSQL, Redis, Prometheus, podman
# with runc and busybox for locally built images; restic and sqlite3 for backups; OpenSSH and
# iproute2 and sudo for the sshd test hosts), through apt-get, only when missing.
# Runs as root or through sudo; on a machine where neither works it says what is missing.
set -euo pipefail

need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || need+=(postgresql)
command -v redis-server >/dev/null || need+=(redis-server)
command -v prometheus >/dev/null || need+=(prometheus)
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
[ -x /bin/busybox ] || command -v busybox >/dev/null || need+=(busybox-static)
# backup verification (issue 11): restic repositories and SQLite databases
command -v restic >/dev/null || need+=(restic)
command -v sqlite3 >/dev/null || need+=(sqlite3)
# fleet tests (issue 14): sshd hosts in network namespaces (ip, unshare/nsenter from util-linux)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null || need+=(openssh-client)
command -v ip >/dev/null || need+=(iproute2)
# a remote host's checks run through sudo (?sudo=true&sudo_user=...): sudo on the sshd hosts
command -v sudo >/dev/null || need+=(sudo)

if [ "${#need[@]}" -eq 0 ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        SUDO="sudo"
    else
        echo "install-services: missing ${need[*]}; install them (apt-get install ${need[*]}) or run as root" >&2
        exit 1
    fi
fi
echo "install-services: installing ${need[*]} with apt-get" >&2
$SUDO apt-get update -qq
# policy-rc.d 101: the packages' own services must not start; the tests start their own servers
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
