//! Wire shapes of ActivityPub objects, named as ActivityStreams names them.

mod actor;
mod event;

pub use actor::{Actor, Endpoints, OrderedCollection, PublicKey};
pub use event::{Event, EventLink, Place, PostalAddress};
