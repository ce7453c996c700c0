#!/usr/bin/env bash
# The secrets deploy/compose.yaml reads, made once into deploy/secrets/ (git-ignored):
#   chatmq.env   CHATMQ_JWT_SECRET (random, 48 characters) and CHATMQ_MONGO_URL (with the password)
#   mongo.env    MONGO_INITDB_ROOT_USERNAME / MONGO_INITDB_ROOT_PASSWORD of the mongo service
#   tls.crt/.key a self-signed certificate for nginx (CN $CHATMQ_TLS_NAME, default localhost):
#                replace both with real ones; `podman compose kill -s HUP nginx` reloads them
#   fcm.json     an empty placeholder: put the Firebase service-account JSON there for push
# Files that exist are kept (idempotent). CHATMQ_SECRETS_DIR chooses another folder.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${CHATMQ_SECRETS_DIR:-deploy/secrets}
name=${CHATMQ_TLS_NAME:-localhost}
mkdir -p "$dir"
umask 077
random() { openssl rand -base64 48 | tr -dc 'A-Za-z0-9' | head -c "$1"; }

if [ ! -f "$dir/mongo.env" ] || [ ! -f "$dir/chatmq.env" ]; then
  password=$(random 32)
  printf 'MONGO_INITDB_ROOT_USERNAME=chatmq\nMONGO_INITDB_ROOT_PASSWORD=%s\n' "$password" > "$dir/mongo.env"
  printf 'CHATMQ_JWT_SECRET=%s\nCHATMQ_MONGO_URL=mongodb://chatmq:%s@mongo:27017/?authSource=admin\n' \
    "$(random 48)" "$password" > "$dir/chatmq.env"
fi
if [ ! -f "$dir/tls.crt" ] || [ ! -f "$dir/tls.key" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=$name" \
    -addext "subjectAltName=DNS:$name" -keyout "$dir/tls.key" -out "$dir/tls.crt" 2>/dev/null
fi
[ -f "$dir/fcm.json" ] || echo '{}' > "$dir/fcm.json"
# the containers run as uid 10001: secrets mounted from files keep these modes
chmod 0644 "$dir/tls.crt" "$dir/fcm.json"
chmod 0640 "$dir/tls.key" "$dir/chatmq.env" "$dir/mongo.env"
echo "secrets in $dir: $(cd "$dir" && ls | tr '\n' ' ')"
