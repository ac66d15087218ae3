//! Calls every method of the ringdrop API, read from its descriptor set,
//! as whichever user runs it: the table test of the authority model. Each
//! request is built from the method's own message: a field is set when the
//! values file names it (`Method.field`, then `Service.field`, then
//! `field`), so a method added to the protos is called with no change here.
//!
//! rdtable SOCKET VALUES.json [Service/Method ...]
//! rdtable --list                 (the methods, one a line)
//!
//! Prints one JSON line per method: `method`, `code` (`Ok` or the status
//! code), `message`, and the request and every message answered (text
//! format). Streams are read for at most a second.

use std::{path::Path, time::Duration};

use anyhow::{bail, Context, Result};
use bytes::{Buf, BufMut, Bytes};
use prost::Message;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MethodDescriptor, Value,
};
use serde_json::{json, Value as Json};
use tonic::{
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    Status,
};

/// Bytes in, bytes out: the messages are encoded and decoded here, by
/// their descriptors.
#[derive(Debug, Clone, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put(item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining())))
    }
}

/// The value the values file gives `field` of `method`, if any.
fn value_for(values: &Json, method: &MethodDescriptor, field: &FieldDescriptor) -> Option<Value> {
    let keys = [
        format!("{}.{}", method.name(), field.name()),
        format!("{}.{}", method.parent_service().name(), field.name()),
        field.name().to_string(),
    ];
    let given = keys.iter().find_map(|k| values.get(k))?;
    if field.is_list() {
        let items = given.as_array()?;
        let converted: Option<Vec<Value>> = items.iter().map(|v| scalar(field, v)).collect();
        return converted.map(Value::List);
    }
    scalar(field, given)
}

fn scalar(field: &FieldDescriptor, v: &Json) -> Option<Value> {
    Some(match field.kind() {
        Kind::String => Value::String(v.as_str()?.to_string()),
        Kind::Bytes => Value::Bytes(Bytes::from(v.as_str()?.as_bytes().to_vec())),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(v.as_u64()?),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(u32::try_from(v.as_u64()?).ok()?),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(v.as_i64()?),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(i32::try_from(v.as_i64()?).ok()?),
        Kind::Bool => Value::Bool(v.as_bool()?),
        Kind::Enum(_) => Value::EnumNumber(i32::try_from(v.as_i64()?).ok()?),
        _ => return None,
    })
}

fn request_for(values: &Json, method: &MethodDescriptor) -> DynamicMessage {
    let mut msg = DynamicMessage::new(method.input());
    for field in method.input().fields() {
        if let Some(v) = value_for(values, method, &field) {
            msg.set_field(&field, v);
        }
    }
    msg
}

/// Calls `method`: the status and the text of every message answered.
async fn call(
    channel: tonic::transport::Channel,
    method: &MethodDescriptor,
    request: &DynamicMessage,
) -> (Result<(), Status>, Vec<String>) {
    let mut grpc = tonic::client::Grpc::new(channel);
    if let Err(e) = grpc.ready().await {
        return (Err(Status::unavailable(e.to_string())), Vec::new());
    }
    let path: http::uri::PathAndQuery =
        format!("/{}/{}", method.parent_service().full_name(), method.name())
            .parse()
            .expect("a method path");
    let body = tonic::Request::new(Bytes::from(request.encode_to_vec()));
    let text = |b: Bytes| {
        DynamicMessage::decode(method.output(), b)
            .map(|m| m.to_text_format())
            .unwrap_or_else(|e| format!("<undecodable: {e}>"))
    };
    if !method.is_server_streaming() {
        return match grpc.unary(body, path, Raw).await {
            Ok(answer) => (Ok(()), vec![text(answer.into_inner())]),
            Err(status) => (Err(status), Vec::new()),
        };
    }
    let mut stream = match grpc.server_streaming(body, path, Raw).await {
        Ok(s) => s.into_inner(),
        Err(status) => return (Err(status), Vec::new()),
    };
    let mut seen = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        match tokio::time::timeout_at(until, stream.message()).await {
            Err(_) | Ok(Ok(None)) => return (Ok(()), seen),
            Ok(Ok(Some(m))) => seen.push(text(m)),
            Ok(Err(status)) => return (Err(status), seen),
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let pool = DescriptorPool::decode(ringdrop_proto::FILE_DESCRIPTOR_SET)?;
    let all: Vec<MethodDescriptor> = pool
        .services()
        .flat_map(|s| s.methods().collect::<Vec<_>>())
        .collect();
    let name = |m: &MethodDescriptor| format!("{}/{}", m.parent_service().name(), m.name());
    if args.first().is_some_and(|a| a == "--list") {
        all.iter().for_each(|m| println!("{}", name(m)));
        return Ok(());
    }
    let [socket, values, only @ ..] = args.as_slice() else {
        bail!("usage: rdtable SOCKET VALUES.json [Service/Method ...] | rdtable --list");
    };
    let values: Json = serde_json::from_slice(&std::fs::read(values).context("values file")?)?;
    let methods: Vec<MethodDescriptor> = if only.is_empty() {
        all
    } else {
        only.iter()
            .map(|want| {
                all.iter()
                    .find(|m| &name(m) == want)
                    .cloned()
                    .with_context(|| format!("no method {want}"))
            })
            .collect::<Result<_>>()?
    };
    let channel = ringdrop_tests::channel(Path::new(socket)).await?;
    for method in &methods {
        let request = request_for(&values, method);
        let (answer, messages) = call(channel.clone(), method, &request).await;
        let (code, message) = match &answer {
            Ok(()) => ("Ok".to_string(), String::new()),
            Err(s) => (format!("{:?}", s.code()), s.message().to_string()),
        };
        println!(
            "{}",
            json!({
                "method": name(method),
                "code": code,
                "message": message,
                "request": request.to_text_format(),
                "messages": messages,
            })
        );
    }
    Ok(())
}
