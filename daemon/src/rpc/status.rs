//! The one place that maps domain errors to gRPC status codes.

use tonic::{Code, Status};

use crate::{
    catalog::CatalogError,
    daemon::{AccessError, ContactError, LimitsError},
    registry::RegistryError,
    shares::{ScanError, ShareError},
    ticket::TicketError,
    transfers::TransferError,
};

fn status(code: Code, e: impl std::fmt::Display) -> Status {
    Status::new(code, e.to_string())
}

/// Conversion of a domain error into the status a client sees.
pub trait ToStatus {
    fn to_status(&self) -> Status;
}

impl ToStatus for RegistryError {
    fn to_status(&self) -> Status {
        match self {
            RegistryError::NewerSchema { .. } => status(Code::FailedPrecondition, self),
            _ => status(Code::Internal, self),
        }
    }
}

impl ToStatus for TicketError {
    fn to_status(&self) -> Status {
        status(Code::InvalidArgument, self)
    }
}

impl ToStatus for ShareError {
    fn to_status(&self) -> Status {
        match self {
            ShareError::Scan(ScanError::Missing(_)) => status(Code::NotFound, self),
            ShareError::Scan(ScanError::Unreadable { .. }) => status(Code::PermissionDenied, self),
            ShareError::Scan(_) => status(Code::InvalidArgument, self),
            ShareError::Import { .. } => status(Code::FailedPrecondition, self),
            ShareError::NotFound(_) => status(Code::NotFound, self),
            ShareError::NotHanded(_) | ShareError::HandoffGone => {
                status(Code::FailedPrecondition, self)
            }
            ShareError::ForeignRing(_) => status(Code::PermissionDenied, self),
            ShareError::Ambiguous(_) => status(Code::InvalidArgument, self),
            ShareError::Registry(e) => e.to_status(),
            ShareError::Store(_) | ShareError::Task(_) => status(Code::Internal, self),
            ShareError::UnknownRing(_) => status(Code::InvalidArgument, self),
        }
    }
}

impl ToStatus for TransferError {
    fn to_status(&self) -> Status {
        match self {
            TransferError::Ticket(e) => e.to_status(),
            TransferError::NotFound(_) => status(Code::NotFound, self),
            TransferError::RelativeDest(_) => status(Code::InvalidArgument, self),
            TransferError::Selection(_) => status(Code::InvalidArgument, self),
            TransferError::Registry(e) => e.to_status(),
            TransferError::ShuttingDown => status(Code::Unavailable, self),
            TransferError::InvalidState { .. } => status(Code::FailedPrecondition, self),
            TransferError::Store(_) => status(Code::Internal, self),
            TransferError::NotWritable(_) => status(Code::PermissionDenied, self),
            TransferError::NotOwner { .. } => status(Code::PermissionDenied, self),
            TransferError::BadFinish(_) => status(Code::InvalidArgument, self),
            TransferError::PlacedByDaemon(_) => status(Code::FailedPrecondition, self),
            TransferError::Content { .. } => status(Code::Internal, self),
        }
    }
}

impl ToStatus for AccessError {
    fn to_status(&self) -> Status {
        match self {
            AccessError::UnknownRing(_)
            | AccessError::NoSuchPeer(_)
            | AccessError::NotMember { .. } => status(Code::NotFound, self),
            AccessError::RingExists(_) => status(Code::AlreadyExists, self),
            AccessError::OpenRing | AccessError::BadName(_) | AccessError::UnknownPeer(_) => {
                status(Code::InvalidArgument, self)
            }
            AccessError::Registry(e) => e.to_status(),
            AccessError::Catalog(CatalogError::Connect { .. }) => status(Code::Unavailable, self),
            AccessError::Catalog(_) => status(Code::Unavailable, self),
            AccessError::NoSuchInvite(_) => status(Code::NotFound, self),
            AccessError::BadInviteTerms(_) => status(Code::InvalidArgument, self),
            AccessError::Join(crate::rings::invites::JoinError::Bad(_)) => {
                status(Code::InvalidArgument, self)
            }
            AccessError::Join(crate::rings::invites::JoinError::Refused(_)) => {
                status(Code::PermissionDenied, self)
            }
            AccessError::Join(crate::rings::invites::JoinError::Registry(e)) => e.to_status(),
            AccessError::Join(_) => status(Code::Unavailable, self),
            AccessError::Transfer(e) => e.to_status(),
        }
    }
}

/// `?`-friendly conversion for handlers.
impl ToStatus for ContactError {
    fn to_status(&self) -> Status {
        match self {
            ContactError::Access(e) => e.to_status(),
            ContactError::Share(e) => e.to_status(),
            ContactError::Registry(e) => e.to_status(),
            ContactError::Transfer(e) => e.to_status(),
            ContactError::NoSuchOffer(_) => status(Code::NotFound, self),
            ContactError::Settled { .. } => status(Code::FailedPrecondition, self),
            ContactError::Invalid(_) => status(Code::InvalidArgument, self),
        }
    }
}

pub fn st<E: ToStatus>(e: E) -> Status {
    e.to_status()
}

impl ToStatus for LimitsError {
    fn to_status(&self) -> Status {
        match self {
            LimitsError::NotAdmin => status(Code::PermissionDenied, self),
            LimitsError::Invalid(_) => status(Code::InvalidArgument, self),
            LimitsError::Peer(e) => e.to_status(),
            LimitsError::Registry(e) => e.to_status(),
            LimitsError::Transfer(e) => e.to_status(),
        }
    }
}
