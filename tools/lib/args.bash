# Sourced by every tools/*.sh, first thing:
#
#   source "$(dirname "$0")/lib/args.bash"
#   check_args MIN_ARGS "$@"
#
# With -h or --help as the first argument: prints the script's header comment
# (its usage, what it does, its examples) on stdout and exits 0. With fewer
# than MIN_ARGS arguments: prints the usage line ($usage) on stderr and exits
# 2. Nothing is built or written before these checks.

# The header comment of the calling script: from its second line to the
# first line that is not a comment, without the leading "# ".
script_help() {
    awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"
}

check_args() {
    local min=$1
    shift
    case ${1:-} in
    -h | --help)
        script_help
        exit 0
        ;;
    esac
    if (($# < min)); then
        echo "$usage" >&2
        echo "($(basename "$0") --help says more)" >&2
        exit 2
    fi
}
