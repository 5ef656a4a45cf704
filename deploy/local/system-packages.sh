#!/usr/bin/env bash
# Debian packages the local services need: a JDK for Kafka and Flink (javac builds the job's Java functions), Maven
# to gather jars, Prometheus (and promtool), tcpdump (compiles `gwtel capture --bpf` filters), Rust (builds the
# agent's native engine).
# Installs only what is missing; needs root (or sudo) the first time.
set -euo pipefail
need=()
command -v java >/dev/null 2>&1 && command -v javac >/dev/null 2>&1 || need+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v tshark >/dev/null 2>&1 || need+=(tshark)
command -v tcpdump >/dev/null 2>&1 || [ -x /usr/bin/tcpdump ] || need+=(tcpdump)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
# tcpreplay offers capture files on a veth pair (live capture tests, bench/capture.py).
command -v tcpreplay >/dev/null 2>&1 || need+=(tcpreplay)
# Real flow exporters and pmacct's collectors, for `gwtel collect`'s tests and bench/collect.py.
command -v softflowd >/dev/null 2>&1 || [ -x /usr/sbin/softflowd ] || need+=(softflowd)
command -v nfacctd >/dev/null 2>&1 || [ -x /usr/sbin/nfacctd ] || need+=(pmacct)
# Rust builds the agent's native engine (native/); rustup's toolchain in ~/.cargo/bin is preferred when present.
command -v cargo >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/cargo" ] || need+=(cargo)
# rustfmt: `make lint` checks the Rust code's formatting as ruff checks the Python's.
command -v rustfmt >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/rustfmt" ] || need+=(rustfmt)
# `cargo test` in native/ links its test binaries against libpython (the unversioned .so comes with -dev).
python3 -c 'import os, sys, sysconfig as s; sys.exit(not os.path.exists(os.path.join(s.get_config_var("LIBDIR"), s.get_config_var("LDLIBRARY"))))' \
  || need+=(libpython3.11-dev)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "missing Debian packages: ${need[*]}; install them as root: apt-get install ${need[*]}" >&2
    exit 1
  fi
fi
echo "installing Debian packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# policy-rc.d stops the packages from starting their own daemons: gwtel runs its own Prometheus.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
  $sudo chmod +x /usr/sbin/policy-rc.d
  trap '$sudo rm -f /usr/sbin/policy-rc.d' EXIT
fi
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian's prometheus.service would hold port 9090 at the next boot.
$sudo systemctl disable --now prometheus >/dev/null 2>&1 || true
