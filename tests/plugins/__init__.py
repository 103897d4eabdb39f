"""Task families that live outside finetunekit, added as plugins (see docs/architecture.md)."""
