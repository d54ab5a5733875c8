#!/bin/sh
# Refuse to build a template whose cloud-init user-data would be ignored at first boot:
# cloud-init only reads user-data that starts with the #cloud-config header.
set -eu
: "${USER_DATA:?USER_DATA must name the cloud-init user-data file}"
if [ ! -s "$USER_DATA" ]; then
  echo "check-user-data: $USER_DATA is missing or empty" >&2
  exit 1
fi
if [ "$(head -n 1 "$USER_DATA")" != "#cloud-config" ]; then
  echo "check-user-data: $USER_DATA does not start with #cloud-config" >&2
  exit 1
fi
echo "check-user-data: $(basename "$USER_DATA") has a #cloud-config header ($(wc -l < "$USER_DATA") lines)"
