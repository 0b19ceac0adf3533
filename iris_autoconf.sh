#!/bin/bash
# Runs after every start of the iris container (iris-main --after). Idempotent: running it
# again changes nothing and trains nothing. In order:
#   1. merge.cpf from the image is applied (durable %SYS keeps the iris.cpf of the first start);
#   2. the predefined users' password is set from IRIS_PASSWORD (.env);
#   3. the classes from the image are loaded and compiled into USER (durable %SYS keeps the
#      databases of the first start, so without this a rebuilt image would run old classes);
#   4. MLpipeline.Installer runs (tables if missing, the task brought to
#      MLPIPELINE_WATCH_INTERVAL, Structured Logging started, the production global published);
#   5. the container is marked ready for its health check.
# Any failure, returned or thrown, ends this script with a non-zero code before step 5: iris-main
# then stops the container, and `restart: unless-stopped` starts it again (see iris/README.md).
set -euo pipefail

ready=/tmp/mlpipeline-autoconf.ok
rm -f "${ready}"

if [ -z "${IRIS_PASSWORD:-}" ]; then
    echo "iris_autoconf: IRIS_PASSWORD is not set; copy .env.example to .env and fill it in" >&2
    exit 1
fi
mkdir -p /dur/logs /dur/mlpipeline/featuresets /dur/data

iris merge IRIS /opt/mlpipeline/merge.cpf

# The password is read from the environment inside IRIS: it never appears in a command line.
# Each line is one terminal command: a thrown error is caught and turned into a %Status, and an
# error %Status terminates the session with exit code 1, which stops this script (set -e).
iris session IRIS -U %SYS <<'SESSION'
set password = $system.Util.GetEnviron("IRIS_PASSWORD"), sc = $system.Status.OK()
try { for user = "_SYSTEM", "SuperUser", "Admin" { kill props  set props("PasswordExternal") = password, props("ChangePassword") = 0  set sc = ##class(Security.Users).Modify(user, .props)  quit:$system.Status.IsError(sc) } } catch ex { set sc = ex.AsStatus() } kill password, props if $system.Status.IsError(sc) { do $system.Status.DisplayError(sc) do $system.Process.Terminate(, 1) }
zn "USER"
set sc = $system.Status.OK() try { set sc = $system.OBJ.LoadDir("/opt/mlpipeline/classes", "ck", .errors, 1) } catch ex { set sc = ex.AsStatus() } if $system.Status.IsError(sc) { do $system.Status.DisplayError(sc) do $system.Process.Terminate(, 1) }
set sc = $system.Status.OK() try { set sc = ##class(MLpipeline.Installer).Run("housing") } catch ex { set sc = ex.AsStatus() } if $system.Status.IsError(sc) { do $system.Status.DisplayError(sc) do $system.Process.Terminate(, 1) }
halt
SESSION

touch "${ready}"
echo "iris_autoconf: ready"
