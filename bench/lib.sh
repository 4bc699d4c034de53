# SPDX-License-Identifier: BSD-3-Clause
# shellcheck shell=bash
# Measuring helpers the bench scripts share (sourced, not run).
#
#   cpu_ticks PID     utime + stime of the whole process (all threads), in clock ticks
#                     (/proc/PID/stat fields 14 and 15); fails when the process is gone
#   steal_ticks       ticks the hypervisor gave this VM's CPUs to others, all CPUs (/proc/stat)
#   steal_pct TICKS NS   those ticks as a share (%, one decimal) of all CPUs' time over NS ns
#   median            the median of the numbers on stdin (any whitespace between them; empty
#                     and "-" entries skipped): the middle one, or the mean of the two middle
#                     ones for an even count; "-" when there is none
#   largest           the largest number on stdin (same input rules); nothing when there is none
#   too_much_steal PCT   true when MAX_STEAL is a number (not "off") and PCT (a run's steal_pct)
#                     is above it: the benches then run that run again, up to REDO times

cpu_ticks() {
  local stat fields
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  read -r -a fields <<<"${stat##*) }" # from field 3 on: comm may hold spaces and parentheses
  echo $((fields[11] + fields[12]))
}

steal_ticks() { awk '$1 == "cpu" {print $9}' /proc/stat; }

steal_pct() {
  awk -v st="$1" -v ns="$2" -v hz="$(getconf CLK_TCK)" -v n="$(nproc)" \
    'BEGIN {printf "%.1f\n", (ns > 0 ? 100 * st / hz / (ns / 1e9) / n : 0)}'
}

median() {
  tr -s ' \t' '\n' | grep -v -e '^$' -e '^-$' | sort -g | awk '{a[NR] = $1} END {
    if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2];
    else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

largest() {
  tr -s ' \t' '\n' | grep -v -e '^$' -e '^-$' | sort -g | awk '{v = $1} END {if (NR) print v}'
}

too_much_steal() {
  [[ ${MAX_STEAL:-off} != off && $1 != - ]] && awk -v p="$1" -v m="$MAX_STEAL" 'BEGIN {exit !(p > m)}'
}
