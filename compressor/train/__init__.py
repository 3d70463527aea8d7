"""The one training loop (accelerate) shared by finetune, distill, gradual pruning and QAT."""
