"""Thin readers and writers at the edges: VCF/BCF, FASTA, gene annotation, expression, PredictDB."""
