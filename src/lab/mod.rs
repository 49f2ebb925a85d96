//! Throwaway qemu lab fleet (see issue 4).
