"""Request and response bodies of the HTTP service (pydantic; they make the OpenAPI schema)."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PredictRequest(_Strict):
    """Texts to predict, and how many of the best labels to return for each."""

    texts: list[str] = Field(..., min_length=1, description="The texts, one prediction each, in order.")
    top_k: int = Field(3, ge=1, le=100, description="Labels (with probabilities) per text, best first.")


class Prediction(BaseModel):
    """One text's prediction: ``label`` and ``scores`` for classifiers, ``tokens`` and
    ``tags`` for taggers, ``translation`` for translation models."""

    model_config = ConfigDict(extra="allow")
    text: str


class PredictResponse(BaseModel):
    """Predictions in the order of the request's texts."""

    model: str
    predictions: list[Prediction]


class ExplainRequest(_Strict):
    """Texts to explain and the method."""

    texts: list[str] = Field(..., min_length=1)
    method: Literal["attention", "saliency"] = "attention"
    target: str | None = Field(None, description="The label to explain (default: the prediction).")


class Explanation(BaseModel):
    """Words with one score each (what the model attended to, or gradient x input)."""

    text: str
    method: str
    tokens: list[str]
    scores: list[float]
    label: str
    probability: float
    target: str


class ExplainResponse(BaseModel):
    """Explanations in the order of the request's texts."""

    model: str
    explanations: list[Explanation]


class RouteRequest(_Strict):
    """Customer queries to route."""

    texts: list[str] = Field(..., min_length=1)


class Routed(BaseModel):
    """Where one query goes: its intent and confidence, the route, and whether it was handed to a person."""

    text: str
    intent: str
    confidence: float
    route: str
    handoff: bool
    reason: str


class RouteResponse(BaseModel):
    """Routes in the order of the request's texts."""

    model: str
    routes: list[Routed]


class ModelInfo(BaseModel):
    """One served model."""

    name: str
    run: str
    task: str
    inputs: str
    labels: list[str]
    engine: str
    loaded_at: float


class ModelsResponse(BaseModel):
    """Every served model; ``default`` is the router's unless its table names another."""

    default: str
    models: list[ModelInfo]


class SwapRequest(_Strict):
    """The run directory a model name should serve from now on."""

    run: str = Field(..., min_length=1)


class Health(BaseModel):
    """Liveness or readiness."""

    status: Literal["live", "ready", "loading", "stopping", "failed"]
    detail: str = ""


class ErrorBody(BaseModel):
    """What went wrong and, for a bad request, which field."""

    type: str
    message: str
    field: str | None = None


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer."""

    error: ErrorBody


def error(kind: str, message: str, field: str | None = None) -> dict[str, Any]:
    """An :class:`ErrorResponse` body."""
    return {"error": {"type": kind, "message": message, "field": field}}
