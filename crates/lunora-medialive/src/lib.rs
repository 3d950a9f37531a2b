//! The cloud leg: AWS Elemental MediaLive and MediaPackage v2 provisioned from the box.
//!
//! - [`setup`]: what a superadmin asks for on a channel ([`MediaLiveSetup`]) and the MediaLive
//!   rules checked before anything reaches AWS (pure).
//! - [`preset`]: the named encoder presets (H.264 + AAC ABR ladders).
//! - [`address`]: the box's public address, for the input security group.
//! - [`aws`]: the `[aws]` settings and the SDK clients (standard credential chain).
//! - [`provision`]: create/adopt, start, stop, read back and tear down, by tags.
//! - [`watch`]: since when a channel runs, whether the box feeds it, when an idle one stops.

pub mod address;
pub mod aws;
pub mod preset;
pub mod provision;
pub mod s3;
pub mod setup;
pub mod watch;

pub use aws::{AwsSettings, Clients, default_box_id};
pub use preset::Preset;
pub use provision::{Feed, InputView, Options, ProvisionError, Provisioned, Provisioner};
pub use s3::{FetchError, S3Files};
pub use setup::{ChannelClass, InputPreference, InputType, MediaLiveSetup, Mode, Problem, Target};
pub use watch::{Watch, WatchAction};
