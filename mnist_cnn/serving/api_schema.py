"""What ``POST /predict`` takes and answers, as the OpenAPI docs at ``/docs`` show it.

The route reads its body itself (three forms, each refused with its own message), so the request schema is
written out here rather than derived from a model; the answers are returned as they are built, never validated
against these models, so that a prediction may carry more fields than they list.
"""

from __future__ import annotations

from pydantic import BaseModel


class Prediction(BaseModel):
    label: int
    probability: float
    uncertain: bool  # the probability is below the model's threshold (/health: uncertain_below): too low to trust
    probabilities: list[float]
    top_k: list[tuple[int, float]]
    input: list[list[int]] | None = None  # with ?include_input=true: the 28×28 pixels the image became


class PredictAnswer(BaseModel):
    predictions: list[Prediction]  # in the order of the images sent


class ErrorAnswer(BaseModel):
    error: str


PREDICT_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                "required": ["file"],
            }
        },
        "application/json": {
            "schema": {
                "oneOf": [
                    {
                        "type": "object",
                        "properties": {"images": {"type": "array", "items": {"type": "string", "format": "byte"}}},
                        "required": ["images"],
                    },
                    {
                        "type": "object",
                        "properties": {
                            "pixels": {
                                "type": "array",
                                "items": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}},
                            }
                        },
                        "required": ["pixels"],
                    },
                ]
            }
        },
    },
}
