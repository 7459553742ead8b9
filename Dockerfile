# The exchange as one image: API workers (`exchange serve`) or the scheduler.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    EXCHANGE_DATA_DIR=/var/lib/exchange EXCHANGE_HOST=0.0.0.0 EXCHANGE_PORT=8000
WORKDIR /app
COPY pyproject.toml README.md ./
COPY exchange ./exchange
COPY taxii_server ./taxii_server
COPY policies ./policies
COPY feeds ./feeds
RUN pip install --no-cache-dir . && useradd --system --home /var/lib/exchange exchange \
    && mkdir -p /var/lib/exchange && chown exchange /var/lib/exchange
USER exchange
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=5 \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz').status != 200)"
CMD ["exchange", "serve"]
