//! `ringdropctl web`: the page, served on loopback by a client of the
//! daemon running as this user, so every action on the page is judged as
//! this user (a listener in the daemon would not know whose request it
//! is). The page's files are in this binary; its API is the daemon's own,
//! as JSON (`api`); who may use it is `guard`'s.

mod api;
mod guard;
mod json;

use std::{convert::Infallible, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use bytes::Bytes;
use clap::Args;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_stream::{wrappers::ReceiverStream, StreamExt};

use crate::{client, error::CliError, output::Out};
use api::{Api, ApiError};
use guard::{Files, Guard, Refusal};

const INDEX: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const APP_CSS: &str = include_str!("app.css");

/// The page's own rules for the browser: nothing but its own files, no
/// frames, no sniffing, no referrer.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
/// Connections served at once (a loopback port is open to every local user).
const MAX_CONNECTIONS: usize = 64;
/// The largest API request body.
const MAX_BODY: usize = 1024 * 1024;

#[derive(Debug, Args)]
pub struct WebArgs {
    /// Loopback address and port to serve the page on.
    #[arg(long, default_value = "127.0.0.1:8399", value_name = "ADDR:PORT")]
    listen: SocketAddr,
    /// Do not open a browser; only print where the page is.
    #[arg(long)]
    no_open: bool,
}

struct Server {
    guard: Guard,
    api: Api,
}

pub async fn web(socket: Option<PathBuf>, out: &Out, args: WebArgs) -> Result<(), CliError> {
    if !args.listen.ip().is_loopback() {
        return Err(CliError::bad_input(format!(
            "{}: the page is served on loopback only (127.0.0.1, ::1): it acts with your authority",
            args.listen
        )));
    }
    let c = client::connect(socket).await?;
    let files = Files::new(ringdrop_proto::paths::user_runtime_dir())?;
    let token = files.token()?;
    let listener = TcpListener::bind(args.listen).await.map_err(|e| {
        CliError::failed(format!(
            "cannot listen on {}: {e} (another `ringdropctl web`? choose a port with --listen 127.0.0.1:PORT)",
            args.listen
        ))
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::failed(e.to_string()))?;
    let guard = Guard::new(addr, token);
    let with_token = format!("{}#token={}", guard.url(), guard.token());
    let open = files.write_open(&with_token)?;
    announce(out, &guard, &files, &open, &with_token);
    if !args.no_open {
        open_browser(out, &open);
    }
    let server = Arc::new(Server {
        guard,
        api: Api::new(c)?,
    });
    tokio::select! {
        r = serve(listener, server) => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// Says where the page is: with the token only on a terminal (a log of a
/// user unit is kept), and always the 0600 file that opens it.
fn announce(out: &Out, guard: &Guard, files: &Files, open: &std::path::Path, with_token: &str) {
    use std::io::IsTerminal;
    let url = guard.url();
    let tty = std::io::stdout().is_terminal();
    out.emit(
        serde_json::json!({
            "url": url,
            "open_file": open.display().to_string(),
            "token_file": files.token_path().display().to_string(),
        }),
        || {
            let shown = if tty { with_token } else { url.as_str() };
            format!(
                "ringdrop's page: {shown}\nopen it with its token: file://{} (token in {})",
                open.display(),
                files.token_path().display()
            )
        },
    );
}

/// Opens the redirect file (never the URL with its token: a browser's
/// command line is visible to every user in `ps`).
fn open_browser(out: &Out, open: &std::path::Path) {
    let started = std::process::Command::new("xdg-open")
        .arg(open)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    match started {
        // Reaped when it ends (xdg-open returns once the browser has it).
        Ok(mut child) => {
            std::thread::spawn(move || child.wait());
        }
        Err(_) => out.hint("no browser could be started (xdg-open): open the file above yourself"),
    }
}

async fn serve(listener: TcpListener, server: Arc<Server>) -> Result<(), CliError> {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("ringdropctl web: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue; // dropped: too many at once
        };
        let server = server.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let server = server.clone();
                async move { Ok::<_, Infallible>(handle(&server, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
            drop(slot);
        });
    }
}

type Body = BoxBody<Bytes, Infallible>;

async fn handle(server: &Server, req: Request<Incoming>) -> Response<Body> {
    if let Err(r) = server.guard.host(req.headers()) {
        return refused(r);
    }
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    match (method, path.as_str()) {
        (Method::GET, "/" | "/index.html") => asset(INDEX, "text/html; charset=utf-8"),
        (Method::GET, "/app.js") => asset(APP_JS, "text/javascript; charset=utf-8"),
        (Method::GET, "/app.css") => asset(APP_CSS, "text/css; charset=utf-8"),
        (Method::POST, "/api/call" | "/api/stream") => {
            if let Err(r) = server.guard.api(req.headers()) {
                return refused(r);
            }
            let streaming = path == "/api/stream";
            match api_request(server, req, streaming).await {
                Ok(resp) => resp,
                Err(e) => error(&e),
            }
        }
        (_, "/" | "/index.html" | "/app.js" | "/app.css" | "/api/call" | "/api/stream") => respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed",
        ),
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found"),
    }
}

async fn api_request(
    server: &Server,
    req: Request<Incoming>,
    streaming: bool,
) -> Result<Response<Body>, ApiError> {
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next() == Some("application/json"));
    if !json {
        return Err(ApiError::bad("requests are application/json"));
    }
    let body = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| ApiError::bad(format!("request body: {e}")))?
        .to_bytes();
    let call = server.api.parse(&body, streaming)?;
    if !streaming {
        let json = server.api.call(call).await?;
        return Ok(respond(StatusCode::OK, "application/json", json));
    }
    let (messages, kind) = server.api.stream(call).await?;
    Ok(ndjson(messages, kind))
}

/// A stream of the daemon's messages as one JSON object a line, for as
/// long as the page reads it.
fn ndjson(
    mut messages: tonic::Streaming<Bytes>,
    kind: prost_reflect::MessageDescriptor,
) -> Response<Body> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        loop {
            // The page went away (its body dropped): end the call now, not
            // at the next message of a stream that may stay quiet for hours.
            let next = tokio::select! {
                m = messages.message() => m,
                _ = tx.closed() => break,
            };
            let (mut bytes, end) = match next {
                Ok(Some(m)) => match json::transcode(&kind, m) {
                    Ok(json) => {
                        let mut line = b"{\"message\":".to_vec();
                        line.extend(json);
                        line.push(b'}');
                        (line, false)
                    }
                    Err(e) => {
                        let e = serde_json::json!({ "error": api::undecodable(e).json() });
                        (e.to_string().into_bytes(), true)
                    }
                },
                Ok(None) => break,
                Err(s) => {
                    let e = serde_json::json!({ "error": ApiError::from(s).json() });
                    (e.to_string().into_bytes(), true)
                }
            };
            bytes.push(b'\n');
            if tx.send(Bytes::from(bytes)).await.is_err() || end {
                break;
            }
        }
    });
    let body = StreamBody::new(ReceiverStream::new(rx).map(|b| Ok(Frame::data(b))));
    with_headers(
        Response::new(BodyExt::boxed(body)),
        StatusCode::OK,
        "application/x-ndjson",
    )
}

fn asset(text: &'static str, kind: &'static str) -> Response<Body> {
    respond(StatusCode::OK, kind, text)
}

fn refused(r: Refusal) -> Response<Body> {
    let body = serde_json::json!({ "code": format!("{r:?}"), "message": r.message() });
    respond(r.status(), "application/json", body.to_string())
}

fn error(e: &ApiError) -> Response<Body> {
    respond(e.http, "application/json", e.json().to_string())
}

fn respond(status: StatusCode, kind: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let body = Full::new(body.into()).boxed();
    with_headers(Response::new(body), status, kind)
}

/// Every response: its type, never sniffed, never framed, never cached,
/// the page's CSP, and no CORS headers at all.
fn with_headers(
    mut resp: Response<Body>,
    status: StatusCode,
    kind: &'static str,
) -> Response<Body> {
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    resp
}
