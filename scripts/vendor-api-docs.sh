#!/usr/bin/env bash
# Refresh the API documentation pages' assets (Swagger UI and ReDoc) shipped in the package, so /docs and
# /redoc work with no network. Run by a maintainer when upgrading them; users never run it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
target="$root/src/ains/ops/static/api-docs"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "swagger-ui-dist@${SWAGGER_UI_VERSION:-5}" "redoc@${REDOC_VERSION:-2}" >/dev/null
mkdir swagger redoc
tar xzf swagger-ui-dist-*.tgz -C swagger --strip-components 1
tar xzf redoc-*.tgz -C redoc --strip-components 1
cp swagger/swagger-ui-bundle.js swagger/swagger-ui.css swagger/favicon-32x32.png "$target/"
cp swagger/LICENSE "$target/LICENSE.swagger-ui"
cp swagger/NOTICE "$target/NOTICE.swagger-ui"
cp redoc/bundles/redoc.standalone.js "$target/"
cp redoc/LICENSE "$target/LICENSE.redoc"
echo "swagger-ui-dist $(node -p "require('./swagger/package.json').version"), redoc $(node -p "require('./redoc/package.json').version") -> $target"
