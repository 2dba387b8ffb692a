//! Identity of people: users, passwords, sessions and tokens.

pub mod api_keys;
pub mod email;
pub mod passwords;
pub mod sessions;
pub mod signing;
pub mod throttle;
pub mod users;
