#!/bin/sh
# Writes the compose stack's secrets as files, each a fresh random password (or the URL that
# carries it), into SECRETS_DIR (default deploy/secrets, git-ignored):
#
#   sh deploy/make-secrets.sh deploy/.env
#
# Names come from the env file (POSTGRES_USER, POSTGRES_DB, SYMPHONY_RELAY_DB_USER,
# SECRETS_DIR). An existing file is kept, so re-running never re-keys a running stack; delete
# a file to have it made again. Nothing secret is printed.
set -eu

env_file=${1:?usage: sh deploy/make-secrets.sh deploy/.env}
[ -r "$env_file" ] || { echo "make-secrets: cannot read $env_file: copy deploy/.env.example there first" >&2; exit 1; }
# The env file holds plain NAME=value lines (docker compose's format), which sh reads as is.
# shellcheck disable=SC1090
. "$env_file"
: "${POSTGRES_USER:?make-secrets: set POSTGRES_USER in $env_file}"
: "${POSTGRES_DB:?make-secrets: set POSTGRES_DB in $env_file}"
: "${SYMPHONY_RELAY_DB_USER:?make-secrets: set SYMPHONY_RELAY_DB_USER in $env_file}"
dir=${SECRETS_DIR:-./deploy/secrets}

# 32 hexadecimal characters (128 bits): URL-safe, so it can sit inside a postgres:// URL as is.
random_password() {
  od -An -N16 -tx1 /dev/urandom | tr -d ' \n'
}

# Readable by the containers' users (postgres, node): docker compose without swarm bind-mounts
# secret files with their host permissions. The directory itself is private.
write_secret() {
  if [ -e "$dir/$1" ]; then
    echo "make-secrets: kept $dir/$1 (delete it to make a new one)"
  else
    (umask 022 && printf '%s\n' "$2" >"$dir/$1")
    echo "make-secrets: wrote $dir/$1"
  fi
}

mkdir -p "$dir"
chmod 700 "$dir"

if [ -e "$dir/postgres-password" ]; then
  owner_password=$(cat "$dir/postgres-password")
else
  owner_password=$(random_password)
fi
if [ -e "$dir/relay-password" ]; then
  relay_password=$(cat "$dir/relay-password")
else
  relay_password=$(random_password)
fi

write_secret postgres-password "$owner_password"
write_secret owner-database-url "postgres://$POSTGRES_USER:$owner_password@postgres:5432/$POSTGRES_DB"
write_secret relay-password "$relay_password"
write_secret relay-database-url "postgres://$SYMPHONY_RELAY_DB_USER:$relay_password@postgres:5432/$POSTGRES_DB"
write_secret grafana-admin-password "$(random_password)"
