# The production image: gunicorn serving Django, the same image runs the Celery worker and beat.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PLATFORM_VAR_DIR=/app/var

WORKDIR /app
COPY pyproject.toml README.md ./
COPY config ./config
COPY experiments ./experiments
COPY metrics ./metrics
COPY features ./features
COPY analytics ./analytics
COPY manage.py ./
RUN pip install . && useradd --create-home --uid 1000 platform && mkdir -p /app/var && chown platform /app/var
# collectstatic needs settings that load; the real secret comes from the environment at run time.
RUN DJANGO_DEBUG=false DJANGO_SECRET_KEY=build-only DJANGO_ALLOWED_HOSTS=build python manage.py collectstatic --noinput
USER platform
EXPOSE 8000
CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "4", "--threads", "4", "--access-logfile", "-"]
