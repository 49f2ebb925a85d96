//! Resources: observe → diff → converge, with no netdump knowledge.
