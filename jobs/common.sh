# What every GPU job script starts with (sourced after it sets its own variables): the output
# folder, Python and the CLI from this checkout, the time budget and the log.
#   left      seconds left of $BUDGET
#   minutes   an arithmetic expression of seconds, as minutes (at least 0.1)
OUT=${OUT:?set OUT to the folder that comes back}
BUDGET=${BUDGET:-540}            # seconds for the whole job
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
LA="$PY -m latentatlas.cli"
T0=$SECONDS
left() { echo $((BUDGET - (SECONDS - T0))); }
minutes() { $PY -c "print(max(0.1, ($1) / 60))"; }
LOG=$OUT/log.txt
mkdir -p "$OUT"
