"""The example Flask app with Dify 1.x's own OpenTelemetry set-up (ENABLE_OTEL=true).

Dify's ext_otel sets a TracerProvider of its own when the app is created, adds a batch
processor with its exporter to whatever ``get_tracer_provider()`` then returns, and
instruments Flask itself. Its exporter here is the console one, so a test can see that
Dify's own tracing still receives spans. Run it as ``dify_otel_app:app`` with this
directory on PYTHONPATH.
"""

from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.trace import get_tracer_provider, set_tracer_provider

from chatspan.examples.dify_flask import create_app

app = create_app()
set_tracer_provider(TracerProvider(resource=Resource({"service.name": "dify-own-otel"})))
get_tracer_provider().add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
FlaskInstrumentor().instrument_app(app)

__all__ = ["app"]
