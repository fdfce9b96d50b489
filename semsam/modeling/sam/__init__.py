from semsam.modeling.sam.sam import Sam, SamOutput, SamPromptBatch

__all__ = ["Sam", "SamOutput", "SamPromptBatch"]
