#!/usr/bin/env bash
# Makes the certificates the tests and the demo use, with openssl, into DIR:
#   ca.pem / ca.key             the CA everything is signed by
#   server.pem / server.key     localhost, 127.0.0.1 and agent.test
#   client.pem / client.key     a client certificate (CN and SAN client-one)
#   other-ca.pem, other.pem/.key  an unrelated CA and a server cert it signed
#   expired.pem / expired.key   localhost, expired in 2020
#   wronghost.pem / wronghost.key  signed by the CA, for wrong.example only
# ECDSA P-256 keys (cheap handshakes). Idempotent: an existing DIR/ca.pem is
# kept unless --force.
set -euo pipefail
dir=${1:?usage: make-certs.sh DIR [--force]}
force=${2:-}
mkdir -p "$dir"
cd "$dir"
if [ -f ca.pem ] && [ "$force" != --force ]; then exit 0; fi

key() { openssl ecparam -name prime256v1 -genkey -noout -out "$1" 2>/dev/null; }

# A CA.
mkca() { # name subject
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -sha256 -days 3650 -subj "$2" -out "$1.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

# A leaf: name ca subject san [extra ca args...]
leaf() {
  local name=$1 ca=$2 subj=$3 san=$4
  shift 4
  key "$name.key"
  openssl req -new -key "$name.key" -subj "$subj" -out "$name.csr" 2>/dev/null
  cat > "$name.ext" <<EXT
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$san
EXT
  openssl x509 -req -in "$name.csr" -CA "$ca.pem" -CAkey "$ca.key" -CAcreateserial -sha256 \
    -days 825 -extfile "$name.ext" -out "$name.pem" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

mkca ca "/CN=agentos test CA"
mkca other-ca "/CN=some other CA"
leaf server ca "/CN=localhost" "DNS:localhost,IP:127.0.0.1,DNS:agent.test"
leaf client ca "/CN=client-one" "DNS:client-one"
leaf other other-ca "/CN=localhost" "DNS:localhost,IP:127.0.0.1"
leaf wronghost ca "/CN=wrong.example" "DNS:wrong.example"

# Expired: `openssl ca` takes explicit start and end dates.
key expired.key
openssl req -new -key expired.key -subj "/CN=localhost" -out expired.csr 2>/dev/null
mkdir -p ca-db && : > ca-db/index.txt && echo 1000 > ca-db/serial
cat > ca-db/ca.cnf <<CNF
[ca]
default_ca = test
[test]
database = ca-db/index.txt
serial = ca-db/serial
new_certs_dir = ca-db
certificate = ca.pem
private_key = ca.key
default_md = sha256
policy = any
copy_extensions = none
x509_extensions = ext
[any]
commonName = supplied
[ext]
basicConstraints = CA:FALSE
subjectAltName = DNS:localhost,IP:127.0.0.1
CNF
openssl ca -batch -config ca-db/ca.cnf -in expired.csr -out expired.pem -notext \
  -startdate 20200101000000Z -enddate 20200102000000Z 2>/dev/null
rm -rf ca-db expired.csr ca.srl other-ca.srl
chmod 600 ./*.key
