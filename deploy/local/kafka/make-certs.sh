#!/usr/bin/env bash
# Certificates for the local broker's SASL_SSL listener: a CA of its own and a server certificate for
# 127.0.0.1 / localhost signed by it, all PEM. Usage: make-certs.sh DIR [DAYS]
# Writes DIR/ca.pem (give it to clients as kafka.security.ca_file), DIR/ca.key, and DIR/server.pem (the
# broker's PKCS#8 key followed by its certificate, the form of Kafka's PEM key store). Existing files are kept.
set -euo pipefail
dir=${1:?usage: make-certs.sh DIR [DAYS]}
days=${2:-825}
mkdir -p "$dir"
chmod 700 "$dir"
cd "$dir"
umask 077
if [[ ! -s ca.pem || ! -s ca.key ]]; then
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days "$days" \
    -subj "/CN=gwtel local Kafka CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi
if [[ ! -s server.pem ]]; then
  openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' > server.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.crt -days "$days" \
    -extfile server.ext 2>/dev/null
  # Kafka reads PEM keys in PKCS#8 form only.
  openssl pkcs8 -topk8 -nocrypt -in server.key -out server.p8
  cat server.p8 server.crt > server.pem
  rm -f server.key server.p8 server.csr server.ext server.crt ca.srl
fi
chmod 644 ca.pem
