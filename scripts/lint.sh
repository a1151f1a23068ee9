#!/usr/bin/env bash
# Static checks: ruff (lint + format), yamllint, ansible-lint (production profile).
source "$(dirname "$0")/lib.sh"
use_venv
cd "$ROOT"
rc=0
log "ruff check";         ruff check . || rc=1
log "ruff format --check"; ruff format --check . || rc=1
log "yamllint";           yamllint -s . || rc=1
log "ansible-lint";       ansible-lint --nocolor || rc=1
exit "$rc"
