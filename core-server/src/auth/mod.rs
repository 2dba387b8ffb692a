//! Identity of people: users, passwords, sessions and tokens.

pub mod email;
pub mod passwords;
pub mod users;
