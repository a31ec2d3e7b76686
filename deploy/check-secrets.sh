#!/bin/sh
# The compose stack's first service: refuses to start anything while a secret is missing,
# empty, a placeholder or unreadable for the containers' users, so PostgreSQL never initialises its volume with a password from an
# example. Prints one line naming the secret (never its contents) and exits 1.
#
#   sh deploy/check-secrets.sh /run/secrets
set -eu

dir=${1:?usage: sh deploy/check-secrets.sh <secrets directory>}
status=0
for name in postgres-password owner-database-url relay-password relay-database-url grafana-admin-password; do
  file="$dir/$name"
  if [ ! -r "$file" ]; then
    echo "check-secrets: secret $name is missing or unreadable: run sh deploy/make-secrets.sh deploy/.env" >&2
    status=1
  elif ! grep -q '[^[:space:]]' "$file"; then
    echo "check-secrets: secret $name is empty: write a real secret into it or delete it and run sh deploy/make-secrets.sh deploy/.env" >&2
    status=1
  # The same words `roles create-login` refuses (src/db/roles.ts).
  elif grep -Eqi 'change-?me|placeholder|example' "$file"; then
    echo "check-secrets: secret $name is a placeholder (it contains change-me, changeme, placeholder or example): write a real secret into it or delete it and run sh deploy/make-secrets.sh deploy/.env" >&2
    status=1
  # Without swarm the file arrives with its host permissions; the relayer runs as uid 1000.
  elif [ -z "$(find "$file" -perm -0004)" ]; then
    echo "check-secrets: secret $name is not readable by the containers' users: chmod 644 it (keep its directory private, chmod 700)" >&2
    status=1
  fi
done
[ "$status" -eq 0 ] && echo 'check-secrets: every secret is set and none is a placeholder'
exit "$status"
