# The MLflow tracking server of infra/compose.yaml: Postgres backend (psycopg2), S3/MinIO artifacts (boto3).
# MLFLOW_VERSION must match the MLflow ganforge installs (pyproject.toml; tests/test_infra.py checks it).
ARG MLFLOW_VERSION=3.17.2
FROM python:3.11-slim
ARG MLFLOW_VERSION
RUN pip install --no-cache-dir "mlflow==${MLFLOW_VERSION}" psycopg2-binary boto3
EXPOSE 5000
ENTRYPOINT ["mlflow"]
