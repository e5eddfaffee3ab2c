#!/bin/sh
# Redis's TLS material for deploy/docker/compose.yaml: a private CA and a server
# certificate for the host name `redis`, signed by it, in deploy/docker/redis-tls/
# (git-ignored). Run once; run again to renew (then restart the stack).
set -eu
dir="$(dirname "$0")/redis-tls"
mkdir -p "$dir"
cd "$dir"
openssl req -x509 -newkey rsa:3072 -nodes -days 825 -subj "/CN=boxoffice redis CA" \
    -keyout ca.key -out ca.crt 2>/dev/null
openssl req -newkey rsa:3072 -nodes -subj "/CN=redis" -keyout redis.key -out redis.csr \
    2>/dev/null
printf 'subjectAltName=DNS:redis\n' > san.ext
openssl x509 -req -in redis.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 \
    -extfile san.ext -out redis.crt 2>/dev/null
rm -f redis.csr san.ext ca.srl
# The redis container's user reads the key through a Compose secret (a bind mount).
chmod 0644 ca.crt redis.crt redis.key
chmod 0600 ca.key
echo "wrote $(pwd)/ca.crt, redis.crt, redis.key"
