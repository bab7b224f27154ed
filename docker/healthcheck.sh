#!/bin/bash
# HEALTHCHECK for the rwsplit image, with no curl in it: GET /healthz on the admin endpoint
# over bash's /dev/tcp and succeed on HTTP 200. The port is the proxy's `proxy.http_listen`
# (9033) unless RWSPLIT_HEALTH_PORT says otherwise (the sidecar's `sidecar.http_listen`: 9034).
port="${RWSPLIT_HEALTH_PORT:-9033}"
exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
printf 'GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
IFS= read -r -t 5 status <&3 || exit 1
case "$status" in
  "HTTP/1."[01]" 200"*) exit 0 ;;
  *) echo "unhealthy: $status" >&2; exit 1 ;;
esac
