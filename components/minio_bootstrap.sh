#!/bin/sh
# MinIO bootstrap, run by a Job inside the stack namespace with MinIO's own `mc`.
# Idempotent: an existing bucket, user, policy or attachment is left as it is, except that the
# user's secret key and the policy document are re-applied, so a rotation or a policy change
# takes effect. Root credentials come from MinIO's env file and never leave this pod.
set -eu

export MC_CONFIG_DIR="${MC_CONFIG_DIR:-/tmp/.mc}"
mkdir -p "$MC_CONFIG_DIR/certs/CAs"
cp "$MINIO_CA_FILE" "$MC_CONFIG_DIR/certs/CAs/platform-ca.crt"

# MINIO_ROOT_USER and MINIO_ROOT_PASSWORD (letters and digits only: safe in a URL).
. "$MINIO_ROOT_ENV_FILE"
export MC_HOST_platform="https://${MINIO_ROOT_USER}:${MINIO_ROOT_PASSWORD}@${MINIO_ENDPOINT}"

attempt=1
until output=$(mc admin info platform 2>&1); do
  case "$output" in
    # Not a server still starting: a certificate the CA does not vouch for, a root key MinIO refuses.
    *x509:* | *"signature we calculated does not match"* | *"Access Key Id you provided does not exist"*)
      echo "$output" >&2
      echo "bootstrap: MinIO at $MINIO_ENDPOINT refused the bootstrap; nothing was changed" >&2
      exit 1
      ;;
  esac
  if [ "$attempt" -ge 30 ]; then
    echo "$output" >&2 # MinIO's (or mc's) own reason
    echo "bootstrap: MinIO at $MINIO_ENDPOINT did not answer after $attempt attempts" >&2
    exit 1
  fi
  attempt=$((attempt + 1))
  sleep 2
done

# grant BUCKET ACCESS_KEY SECRET_KEY POLICY_NAME POLICY_FILE: the bucket, its user and the user's policy.
grant() {
  mc mb --ignore-existing --region "$REGION" "platform/$1"
  # Creates the user, or sets the secret key of the existing one.
  mc admin user add platform "$2" "$3"
  # Creates the policy, or replaces the document of the existing one.
  mc admin policy create platform "$4" "$5"
  if ! output=$(mc admin policy attach platform "$4" --user "$2" 2>&1); then
    case "$output" in
      *"already"*) echo "bootstrap: policy $4 already attached to $2" ;;
      *) echo "$output" >&2; exit 1 ;;
    esac
  fi
  echo "bootstrap: bucket $1, user $2 and policy $4 are in place"
}

grant "$BUCKET" "$USER_ACCESS_KEY" "$USER_SECRET_KEY" "$POLICY_NAME" "$POLICY_FILE"
# PostgreSQL backups (optional): a second bucket with its own user, who can reach nothing else.
if [ -n "${BACKUP_BUCKET:-}" ]; then
  grant "$BACKUP_BUCKET" "$BACKUP_ACCESS_KEY" "$BACKUP_SECRET_KEY" "$BACKUP_POLICY_NAME" "$BACKUP_POLICY_FILE"
fi
