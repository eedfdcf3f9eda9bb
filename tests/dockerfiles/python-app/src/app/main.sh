# Stands in for "python -m app": prints what it would serve with.
echo "serving on $2 as $(id -un) with flask $(cat /opt/venv/site-packages/flask.version)"
echo "unbuffered=$PYTHONUNBUFFERED path=$PATH"
