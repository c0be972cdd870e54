#!/usr/bin/env bash
# Development certificates for mTLS between the edge and gateway collectors,
# from the gateway to the Sextant hub and to the backends: one CA, server
# certificates for the gateway and for the hub, client certificates for the
# edge and for the gateway's exporters. Not for production: keys are
# unencrypted, and the CA lives next to them.
#
# The hub takes them as (docs/security.md, "TLS and client certificates"):
#   [tls]
#   cert_file = "hub.pem"
#   key_file = "hub-key.pem"
#   client_ca_file = "ca.pem"
#   [[client_certs]]            # the gateway's certificate stands for a tenant
#   subject = "CN=gateway"
#   tenant = "team-a"
#   scopes = ["ingest"]
#
#   ./gen-certs.sh [OUT_DIR]     (default ./tls)
set -euo pipefail
out="${1:-tls}"
mkdir -p "$out"
cd "$out"
days=365

openssl req -x509 -newkey rsa:2048 -nodes -days "$days" \
    -subj "/CN=sextant-dev-ca" -keyout ca-key.pem -out ca.pem 2>/dev/null

# name, CN, extendedKeyUsage, subjectAltName
issue() {
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$2" \
        -keyout "$1-key.pem" -out "$1.csr" 2>/dev/null
    printf 'extendedKeyUsage=%s\nsubjectAltName=%s\n' "$3" "$4" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
        -days "$days" -extfile "$1.ext" -out "$1.pem" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}

issue gateway gateway.sextant.example serverAuth \
    "DNS:gateway.sextant.example,DNS:localhost,IP:127.0.0.1"
issue hub sextant-hub.sextant.svc serverAuth \
    "DNS:sextant-hub.sextant.svc,DNS:sextant-hub,DNS:localhost,IP:127.0.0.1"
issue edge edge-1 clientAuth "DNS:edge-1"
issue gateway-client gateway clientAuth "DNS:gateway"
chmod 600 ./*-key.pem
echo "certificates in $(pwd): ca.pem, gateway.pem, hub.pem, edge.pem, gateway-client.pem (and keys)"
