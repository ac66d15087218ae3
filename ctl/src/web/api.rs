//! The page's API: any method of the daemon's public gRPC API, called by
//! name with its request as JSON, answered as JSON (server streams as one
//! JSON object per line). Messages are transcoded through the API's own
//! descriptor set, so the page needs no second API to be kept in step, and
//! the daemon judges every call as the user who runs this server.
//!
//! Four calls need what a client does beside the call when the daemon is
//! the system service: `Share` and `Send` hand over the files opened as
//! this user, `Fetch` and `AcceptOffer` say whether this user can write
//! the destination, and their files are placed here when they are ready.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use prost::Message;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor, MethodDescriptor, Value,
};
use ringdrop_proto::v1 as pb;
use tonic::{
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    Code, Status,
};

use super::json;
use crate::{client::Client, commands, output::Out};

/// The package whose methods the page may call (not health, not reflection).
const PACKAGE: &str = "ringdrop.v1";
/// The largest response the page is sent (ListShares of 10,000 shares is
/// a few MB).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// A call the page asked for.
#[derive(Debug)]
pub struct Call {
    pub method: MethodDescriptor,
    pub request: DynamicMessage,
}

/// An error as the page shows it: the CLI's message, and a gRPC code name.
#[derive(Debug)]
pub struct ApiError {
    pub http: http::StatusCode,
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn bad(message: impl Into<String>) -> Self {
        Self {
            http: http::StatusCode::BAD_REQUEST,
            code: "InvalidArgument".into(),
            message: message.into(),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({ "code": self.code, "message": self.message })
    }
}

impl From<Status> for ApiError {
    fn from(s: Status) -> Self {
        use http::StatusCode as H;
        let http = match s.code() {
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => H::BAD_REQUEST,
            Code::NotFound => H::NOT_FOUND,
            Code::AlreadyExists | Code::Aborted => H::CONFLICT,
            // Not 401: that is this server's own "no token".
            Code::PermissionDenied | Code::Unauthenticated => H::FORBIDDEN,
            Code::ResourceExhausted => H::TOO_MANY_REQUESTS,
            Code::Unavailable => H::SERVICE_UNAVAILABLE,
            _ => H::INTERNAL_SERVER_ERROR,
        };
        Self {
            http,
            code: format!("{:?}", s.code()),
            message: s.message().to_string(),
        }
    }
}

impl From<crate::error::CliError> for ApiError {
    fn from(e: crate::error::CliError) -> Self {
        let http = if e.code == crate::error::BAD_INPUT {
            http::StatusCode::BAD_REQUEST
        } else {
            http::StatusCode::INTERNAL_SERVER_ERROR
        };
        Self {
            http,
            code: "Failed".into(),
            message: e.msg,
        }
    }
}

/// The daemon, as this user, and the API's descriptors.
pub struct Api {
    client: Client,
    pool: DescriptorPool,
    /// Transfers started here whose files this server places.
    placing: Arc<Mutex<HashSet<u64>>>,
}

impl Api {
    pub fn new(client: Client) -> Result<Self, crate::error::CliError> {
        let pool = DescriptorPool::decode(ringdrop_proto::FILE_DESCRIPTOR_SET).map_err(|e| {
            crate::error::CliError::failed(format!("the API's descriptors do not load: {e}"))
        })?;
        Ok(Self {
            client,
            pool,
            placing: Arc::default(),
        })
    }

    /// Reads `{"method": "ringdrop.v1.Service/Method", "request": {...}}`.
    pub fn parse(&self, body: &[u8], streaming: bool) -> Result<Call, ApiError> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            method: String,
            #[serde(default)]
            request: Option<serde_json::Value>,
        }
        let body: Body =
            serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("bad request: {e}")))?;
        let method = self.method(&body.method)?;
        if method.is_server_streaming() != streaming || method.is_client_streaming() {
            let want = if streaming {
                "/api/stream"
            } else {
                "/api/call"
            };
            return Err(ApiError::bad(format!(
                "{} is not a {} method",
                body.method,
                want.trim_start_matches("/api/")
            )));
        }
        let value = body.request.unwrap_or_else(|| serde_json::json!({}));
        let request = DynamicMessage::deserialize_with_options(
            method.input(),
            value,
            &DeserializeOptions::new().deny_unknown_fields(true),
        )
        .map_err(|e| ApiError::bad(format!("bad {}: {e}", method.input().name())))?;
        Ok(Call { method, request })
    }

    fn method(&self, name: &str) -> Result<MethodDescriptor, ApiError> {
        let unknown = || ApiError::bad(format!("no such method: {name}"));
        let (service, method) = name.split_once('/').ok_or_else(unknown)?;
        if service.rsplit_once('.').map(|(pkg, _)| pkg) != Some(PACKAGE) {
            return Err(unknown());
        }
        let service = self.pool.get_service_by_name(service).ok_or_else(unknown)?;
        let found = service.methods().find(|m| m.name() == method);
        found.ok_or_else(unknown)
    }

    /// A unary call; its response as JSON text.
    pub async fn call(&self, call: Call) -> Result<Vec<u8>, ApiError> {
        let Call {
            method,
            mut request,
        } = call;
        let started = self.before(&method, &mut request).await?;
        let mut grpc = self.grpc().await?;
        let response = grpc
            .unary(tonic::Request::new(request), path(&method), DynCodec)
            .await?
            .into_inner();
        if started {
            self.after(&method, &response);
        }
        json::transcode(&method.output(), response).map_err(undecodable)
    }

    /// A server-streaming call: its messages (as bytes; `json::transcode`
    /// with the type also returned).
    pub async fn stream(
        &self,
        call: Call,
    ) -> Result<(tonic::Streaming<Bytes>, MessageDescriptor), ApiError> {
        let Call {
            method,
            mut request,
        } = call;
        self.before(&method, &mut request).await?;
        let mut grpc = self.grpc().await?;
        let response = grpc
            .server_streaming(tonic::Request::new(request), path(&method), DynCodec)
            .await?;
        Ok((response.into_inner(), method.output()))
    }

    /// A generic client on the daemon's channel, ready for a call.
    async fn grpc(&self) -> Result<tonic::client::Grpc<tonic::transport::Channel>, ApiError> {
        let mut grpc = tonic::client::Grpc::new(self.client.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE);
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(format!("ringdropd is not reachable: {e}")))?;
        Ok(grpc)
    }

    /// What a client adds to the four calls that touch this user's files;
    /// whether the call starts a transfer this server may have to place.
    async fn before(
        &self,
        method: &MethodDescriptor,
        request: &mut DynamicMessage,
    ) -> Result<bool, ApiError> {
        match method.full_name() {
            "ringdrop.v1.Shares.Share" | "ringdrop.v1.Contacts.Send" => {
                let path = absolute(&string(request, "path"), "the path to share")?;
                // Send has no name of its own: the offer is named by the path.
                let name = string(request, "name");
                let name = (!name.is_empty()).then_some(name.as_str());
                let token = commands::handoff::hand_over(&self.client.socket, &path, name).await?;
                request.set_field_by_name("path", Value::String(path.display().to_string()));
                request.set_field_by_name(
                    "handoff",
                    Value::Bytes(Bytes::from(token.unwrap_or_default())),
                );
                Ok(false)
            }
            "ringdrop.v1.Transfers.Fetch" | "ringdrop.v1.Contacts.AcceptOffer" => {
                let out = string(request, "out");
                let dest = if out.is_empty() {
                    download_dir()
                } else {
                    absolute(&out, "the destination")?
                };
                let cannot = commands::place::cannot_write(&dest).unwrap_or_default();
                request.set_field_by_name("out", Value::String(dest.display().to_string()));
                request.set_field_by_name("caller_cannot_write", Value::String(cannot));
                if method.full_name() == "ringdrop.v1.Transfers.Fetch" {
                    // Not hosted: the page returns at once, like --detach.
                    request.set_field_by_name("host", Value::Bytes(Bytes::new()));
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// A transfer started here whose files the daemon leaves to its client
    /// (the system service may not write this user's destination): placed
    /// by this server when it is ready, as `ringdropctl fetch` would.
    fn after(&self, method: &MethodDescriptor, response: &Bytes) {
        let transfer = match method.full_name() {
            "ringdrop.v1.Transfers.Fetch" => pb::FetchResponse::decode(response.clone())
                .ok()
                .and_then(|r| r.transfer),
            _ => pb::AcceptOfferResponse::decode(response.clone())
                .ok()
                .and_then(|r| r.transfer),
        };
        let Some(t) = transfer else { return };
        if !t.client_places || t.owner_uid != commands::place::my_uid() {
            return;
        }
        let first = self.placing.lock().is_ok_and(|mut p| p.insert(t.id));
        if !first {
            return;
        }
        let client = Client {
            channel: self.client.channel.clone(),
            socket: self.client.socket.clone(),
        };
        let placing = self.placing.clone();
        tokio::spawn(async move {
            let out = Out::new(false, true);
            let placed = commands::transfers::follow_and_place(&client, t.id, &out).await;
            if let Err(e) = placed {
                eprintln!("ringdropctl web: transfer {}: {}", t.id, e.msg);
            }
            if let Ok(mut p) = placing.lock() {
                p.remove(&t.id);
            }
        });
    }
}

/// A response the daemon sent that does not decode as its type.
pub fn undecodable(e: String) -> ApiError {
    ApiError::from(Status::internal(format!(
        "decoding the daemon's answer: {e}"
    )))
}

fn path(method: &MethodDescriptor) -> http::uri::PathAndQuery {
    let service = method.parent_service();
    let p = format!("/{}/{}", service.full_name(), method.name());
    http::uri::PathAndQuery::try_from(p)
        .unwrap_or_else(|_| http::uri::PathAndQuery::from_static("/"))
}

fn string(msg: &DynamicMessage, field: &str) -> String {
    msg.get_field_by_name(field)
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The page has no working directory of its own: paths must be absolute.
fn absolute(p: &str, what: &str) -> Result<PathBuf, ApiError> {
    let path = Path::new(p);
    if !path.is_absolute() {
        return Err(ApiError::bad(format!(
            "{what} must be an absolute path (/home/...): {p:?}"
        )));
    }
    Ok(path.to_path_buf())
}

/// This user's download directory (XDG), else the home directory.
fn download_dir() -> PathBuf {
    let dirs = directories::UserDirs::new();
    dirs.as_ref()
        .and_then(|d| d.download_dir().filter(|p| p.is_dir()))
        .map(Path::to_path_buf)
        .or_else(|| dirs.as_ref().map(|d| d.home_dir().to_path_buf()))
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// Encodes a dynamic request; hands the response's bytes on as they are
/// (`json::transcode` reads them).
struct DynCodec;

impl Codec for DynCodec {
    type Encode = DynamicMessage;
    type Decode = Bytes;
    type Encoder = DynEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> DynEncoder {
        DynEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

struct DynEncoder;

impl Encoder for DynEncoder {
    type Item = DynamicMessage;
    type Error = Status;

    fn encode(&mut self, item: DynamicMessage, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(format!("encoding the request: {e}")))
    }
}

struct RawDecoder;

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        use bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}
