//! The control API as a generic gRPC client sees it: health, reflection,
//! and a socket only its owner can use.

use anyhow::{Context, Result};
use ringdrop_tests::TestDaemon;
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};
use tonic_reflection::pb::v1::{
    server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
    server_reflection_response::MessageResponse, ServerReflectionRequest,
};

#[tokio::test(flavor = "multi_thread")]
async fn health_reports_serving() -> Result<()> {
    let d = TestDaemon::start().await?;
    let mut health = HealthClient::new(d.channel.clone());
    for service in [
        "",
        "ringdrop.v1.Node",
        "ringdrop.v1.Shares",
        "ringdrop.v1.Transfers",
    ] {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await?
            .into_inner();
        assert_eq!(r.status, ServingStatus::Serving as i32, "{service:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn reflection_lists_our_services_and_describes_them() -> Result<()> {
    let d = TestDaemon::start().await?;
    let mut refl = ServerReflectionClient::new(d.channel.clone());
    let reqs = vec![
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        },
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(
                "ringdrop.v1.Transfers".into(),
            )),
        },
    ];
    let mut stream = refl
        .server_reflection_info(tokio_stream::iter(reqs))
        .await?
        .into_inner();
    let first = stream.message().await?.context("no answer")?;
    let Some(MessageResponse::ListServicesResponse(list)) = first.message_response else {
        panic!("unexpected answer {first:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for want in [
        "ringdrop.v1.Node",
        "ringdrop.v1.Shares",
        "ringdrop.v1.Transfers",
        "grpc.health.v1.Health",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let second = stream.message().await?.context("no answer")?;
    let Some(MessageResponse::FileDescriptorResponse(fd)) = second.message_response else {
        panic!("unexpected answer {second:?}");
    };
    assert!(!fd.file_descriptor_proto.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn socket_is_private_to_its_owner() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let d = TestDaemon::start().await?;
    let mode = std::fs::metadata(&d.socket)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    Ok(())
}
