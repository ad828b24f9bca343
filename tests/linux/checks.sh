# The guest scripts' checks (guest.py puts this at /vireo/checks.sh; each
# script sources it): one PASS or FAIL line per check, and checks_done ends
# the script with the number of failures as its status.
fails=0
check() {
	name=$1
	shift
	if "$@"; then
		echo "PASS $name"
	else
		echo "FAIL $name"
		fails=$((fails + 1))
	fi
}
checks_done() {
	echo "INFO $fails failed"
	exit $fails
}
