FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
# The gRPC modules, generated from proto/ (never committed; quotas/grpc_api/build.py).
RUN python -m quotas.grpc_api.build
RUN SECRET_KEY=build python manage.py collectstatic --noinput -v 0
EXPOSE 8000 50051
CMD ["gunicorn", "creditservice.wsgi:application", "-c", "scripts/gunicorn.conf.py"]
