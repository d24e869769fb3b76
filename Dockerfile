# The production image: gunicorn serving Django; the same image runs GrowthBook's streams (uvicorn on
# config.asgi, docker-compose.yml's stream service), the Celery worker and beat.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PLATFORM_VAR_DIR=/app/var

WORKDIR /app
# Dependencies first, in a layer that depends on pyproject.toml alone: a change to the code reuses it
# and reinstalls only the project itself below. The list is pyproject's [project] dependencies,
# read with the standard library (tomllib), so there is no second list to keep in sync.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY README.md manage.py ./
COPY config ./config
COPY experiments ./experiments
COPY metrics ./metrics
COPY features ./features
COPY analytics ./analytics
RUN pip install --no-deps . && useradd --create-home --uid 1000 platform && mkdir -p /app/var && chown platform /app/var
# collectstatic needs settings that load; the real secret comes from the environment at run time.
RUN DJANGO_DEBUG=false DJANGO_SECRET_KEY=build-only DJANGO_ALLOWED_HOSTS=build python manage.py collectstatic --noinput
USER platform
EXPOSE 8000
CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "4", "--threads", "4", "--access-logfile", "-"]
