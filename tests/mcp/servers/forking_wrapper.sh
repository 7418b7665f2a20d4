#!/bin/sh
# A wrapper like npx or a launcher script: it does not exec the server but runs it as a child, and
# leaves a helper behind that ignores SIGTERM and stdin. Arguments: the command of the server.
# It writes "wrapper-pid helper-pid" to wrapper.pids in the working folder.
trap '' TERM
sleep 300 </dev/null &
echo "$$ $!" > wrapper.pids
"$@"
wait
