#!/bin/bash
# Runs after every start of the iris container (iris-main --after). Idempotent: running it
# again changes nothing and trains nothing. It sets the predefined users' password from
# IRIS_PASSWORD (.env), re-runs MLpipeline.Installer (tables if missing, the task brought to
# MLPIPELINE_WATCH_INTERVAL, Structured Logging started, the production global published),
# then marks the container ready for its health check.
set -euo pipefail

ready=/tmp/mlpipeline-autoconf.ok
rm -f "${ready}"

if [ -z "${IRIS_PASSWORD:-}" ]; then
    echo "iris_autoconf: IRIS_PASSWORD is not set; copy .env.example to .env and fill it in" >&2
    exit 1
fi
mkdir -p /dur/logs /dur/mlpipeline/featuresets /dur/data

# The password is read from the environment inside IRIS: it never appears in a command line.
iris session IRIS -U %SYS <<'SESSION'
set password = $system.Util.GetEnviron("IRIS_PASSWORD")
for user = "_SYSTEM", "SuperUser", "Admin" { kill props  set props("Password") = password, props("ChangePassword") = 0  set sc = ##class(Security.Users).Modify(user, .props)  if $system.Status.IsError(sc) { do $system.Status.DisplayError(sc) do $system.Process.Terminate(, 1) } }
kill password, props
zn "USER"
set sc = ##class(MLpipeline.Installer).Run("housing")
if $system.Status.IsError(sc) { do $system.Status.DisplayError(sc) do $system.Process.Terminate(, 1) }
halt
SESSION

touch "${ready}"
echo "iris_autoconf: ready"
