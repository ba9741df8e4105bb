#!/usr/bin/env bash
# Installs what building and testing the PBX needs on a fresh Debian machine. Idempotent and quiet when
# everything is already there.
set -euo pipefail

need=()
# rocksdb's bindgen needs libclang; the C++ build needs a compiler.
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
command -v c++ >/dev/null 2>&1 || need+=(g++)
# Real SIP peers for the tests: sipp, baresip, sipvicious.
if [ "${1:-}" = "--sip-tools" ]; then
  command -v sipp >/dev/null 2>&1 || need+=(sip-tester)
  command -v baresip >/dev/null 2>&1 || need+=(baresip)
  command -v svwar >/dev/null 2>&1 || need+=(sipvicious)
  # The event-center tests: a real SMTP server (aiosmtpd) and certificates for a webhook receiver.
  /usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1 || need+=(python3-aiosmtpd)
  command -v openssl >/dev/null 2>&1 || need+=(openssl)
  # Prompts spoken from text (POST /audio/speech) and their test.
  command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
  # Backups copied off-site over SFTP: the node runs OpenSSH's client; the test runs a real sshd.
  command -v sftp >/dev/null 2>&1 || need+=(openssh-client)
  [ -x /usr/sbin/sshd ] || need+=(openssh-server)
  # The trunk tests: DNS records for a provider (NAPTR/SRV/A) served by dnsmasq (the binary only,
  # no system service), and Kamailio (with TLS) as the provider's registrar and proxy.
  command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ] || need+=(dnsmasq-base)
  command -v kamailio >/dev/null 2>&1 || [ -x /usr/sbin/kamailio ] || need+=(kamailio)
  dpkg -s kamailio-tls-modules >/dev/null 2>&1 || need+=(kamailio-tls-modules)
  # The web portal's browser tests: headless Chromium driven over WebDriver by chromedriver.
  [ -x /usr/bin/chromium ] || need+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || [ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
fi
# The VIP: the Linux driver and the namespace lab use iproute2, nftables and arping.
if [ "${1:-}" = "--sip-tools" ] || [ "${1:-}" = "--lab" ]; then
  command -v ip >/dev/null 2>&1 || need+=(iproute2)
  command -v nft >/dev/null 2>&1 || need+=(nftables)
  command -v arping >/dev/null 2>&1 || need+=(iputils-arping)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install the stable Rust toolchain (https://rustup.rs) first" >&2
  exit 1
fi
