//! Logs and traces. Logs: `tracing-subscriber` on stderr, JSON lines in production and text in
//! development (`M_LOG_FORMAT` decides otherwise), filtered by `M_LOG_LEVEL` / `RUST_LOG`. Lines
//! are formatted where they happen and written by one logging thread, which writes whatever has
//! queued up at once (one system call for many lines under load); a full queue makes the caller
//! wait rather than drop a line, and at exit the thread gets up to a second to write the rest.
//! Traces: spans for HTTP requests and database statements (target `m::otel`, TRACE level, so
//! that without an exporter no layer is interested and they cost next to nothing), exported over
//! OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set and to Zipkin when `M_ZIPKIN_ENDPOINT` is
//! set. W3C `traceparent` is read from requests and returned on responses.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::{Config, LogFormat, Mode};

/// The span target of exported spans.
pub const TARGET: &str = "m::otel";

/// Flushes logs and exported spans when the process ends.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    /// Writes the queued log lines when dropped.
    logs: Option<tracing_appender::non_blocking::WorkerGuard>,
}

impl Telemetry {
    /// Write queued log lines and export buffered spans (call before exiting).
    pub fn shutdown(self) {
        if let Some(p) = self.provider
            && let Err(e) = p.shutdown()
        {
            eprintln!("warning: flushing traces: {e}");
        }
        drop(self.logs);
    }
}

fn exporters(service: &str, zipkin: Option<&str>) -> Option<SdkTracerProvider> {
    let otlp = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok().filter(|s| !s.trim().is_empty());
    if otlp.is_none() && zipkin.is_none() {
        return None;
    }
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service.to_string());
    }
    let mut builder = SdkTracerProvider::builder().with_resource(resource.build());
    if otlp.is_some() {
        // The endpoint (plus `/v1/traces`) and headers come from the standard OTEL_* variables.
        match opentelemetry_otlp::SpanExporter::builder().with_http().build() {
            Ok(e) => builder = builder.with_batch_exporter(e),
            Err(e) => eprintln!("warning: OTLP trace export is off: {e}"),
        }
    }
    if let Some(url) = zipkin {
        // The crate deprecates its Zipkin exporter in favour of OTLP (recent Zipkin servers take
        // OTLP too); it stays for collectors that only speak Zipkin's v2 JSON.
        #[expect(deprecated, reason = "Zipkin v2 export is a documented option of M")]
        let exporter = opentelemetry_zipkin::ZipkinExporter::builder().with_collector_endpoint(url).build();
        match exporter {
            Ok(e) => builder = builder.with_batch_exporter(e),
            Err(e) => eprintln!("warning: Zipkin trace export is off: {e}"),
        }
    }
    Some(builder.build())
}

/// Install logging and, when configured, trace export. Commands other than the server
/// (`serving` false) log only warnings unless `M_LOG_LEVEL` / `RUST_LOG` say otherwise: their
/// output is what they print.
pub fn init(config: &Config, service: &str, serving: bool) -> Telemetry {
    let default = match config.env {
        _ if !serving => "warn",
        Mode::Development => "info,m::sql=debug",
        Mode::Production => "info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("M_LOG_LEVEL")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let json = match config.log_format {
        Some(f) => f == LogFormat::Json,
        None => config.env == Mode::Production,
    };
    // Logs never show the trace spans.
    let no_spans = Targets::new().with_target(TARGET, LevelFilter::OFF).with_default(LevelFilter::TRACE);
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("m-log")
        // At most PIPE_BUF per write: a batch of whole lines stays whole on a pipe that other
        // processes write to as well.
        .finish(std::io::BufWriter::with_capacity(4096, std::io::stderr()));
    let logs = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(writer)
            .boxed()
    } else {
        // Colors only for a terminal (not in files or collectors), and never with NO_COLOR.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        tracing_subscriber::fmt::layer().with_target(false).with_ansi(ansi).with_writer(writer).boxed()
    }
    .with_filter(filter)
    .with_filter(no_spans);
    let provider = exporters(service, config.zipkin_endpoint.as_deref());
    let traces = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("m"))
            .with_filter(Targets::new().with_target(TARGET, LevelFilter::TRACE))
    });
    if provider.is_some() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    }
    let _ = tracing_subscriber::registry().with(logs).with(traces).try_init();
    Telemetry { provider, logs: Some(guard) }
}
