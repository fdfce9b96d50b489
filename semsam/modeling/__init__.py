from semsam.modeling.pixel_decoder import PixelFeatures
from semsam.modeling.prompt_head import DecoderOutput, PromptBatch
from semsam.modeling.semantic_sam import SemanticSam

__all__ = ["DecoderOutput", "PixelFeatures", "PromptBatch", "SemanticSam"]
