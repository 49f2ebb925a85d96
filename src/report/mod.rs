//! Progress, recap, JSON lines and JUnit output.
