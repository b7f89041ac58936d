"""The unlearning engine: a request and its proxy forget set, the one trainer loop, checkpoint selection and schedules."""
