//! Wire shapes of ActivityPub objects, named as ActivityStreams names them.

mod event;

pub use event::{Event, EventLink, Place, PostalAddress};
