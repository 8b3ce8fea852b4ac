"""``/api/prediction-batches``: upload images (or one zip), run a registered model on them
on the loop host, and keep the result as a prediction batch (``edgeloop.store.prediction_batches``).

| route | role | what |
|---|---|---|
| ``POST ""`` (multipart ``files``, ``model_version`` or ``alias``) | labeler | check, run, store: 201 with the batch |
| ``GET ""`` | any | batches, newest first |
| ``GET /{id}`` | any | images, and each run with its detections |
| ``POST /{id}/runs`` | labeler | run another version on the same images |
| ``GET /{id}/compare?a=&b=`` | any | two runs compared per image (``edgeloop.uploads.compare``) |
| ``POST /{id}/queue`` | labeler | the images become frames in the labeling queue |
| ``GET /{id}/images/{i}.jpg``, ``.../thumbnail.jpg`` | any | the stored JPEG / its thumbnail, ETag + immutable |

An upload is checked whole before anything is written (``edgeloop.uploads``): a limit
passed answers 413, a file that is not a complete image or a bad zip 422, and nothing is
stored. The images go to the object store first (content-addressed, create-exclusive),
then one transaction records the batch; objects this request created are removed again
when that transaction fails.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import File, Form, Header, HTTPException, Path, Query, Response, UploadFile, status
from starlette.concurrency import run_in_threadpool

from api.deps import (
    CurrentPrincipal,
    LabelerPrincipal,
    RegistryDep,
    SettingsDep,
    StoreDep,
    secured_router,
)
from api.prediction_batch_models import (
    Alias,
    BatchPublic,
    BatchSummaryPublic,
    ComparisonPublic,
    ModelChoice,
    ModelVersion,
    QueueCreate,
    QueuePublic,
)
from api.prediction_batch_views import batch_detail, comparison
from api.routes import thumbnails as thumbnail_routes
from api.uploads import UPLOAD_CAMERA, PredictorDep, send_to_queue
from edgeloop import thumbnails
from edgeloop.detection.onnx import ModelError
from edgeloop.objects import ObjectStore, ObjectStoreUnavailableError
from edgeloop.registry import ModelNotFoundError
from edgeloop.store import AnyStore
from edgeloop.store import prediction_batches as batches
from edgeloop.store.prediction_batches import BatchImage, Run, RunExistsError
from edgeloop.uploads import (
    CheckedImage,
    UploadedFile,
    UploadLimits,
    UploadRejectedError,
    read_bounded,
    read_upload,
)

logger = logging.getLogger(__name__)

router = secured_router("/api/prediction-batches", tag="prediction-batches")

BatchId = Annotated[int, Path(ge=1, le=2**62, description="Prediction batch id.")]
UPLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such model version"},
    413: {"description": "A limit passed: files, bytes, pixels, zip entries (nothing stored)"},
    422: {"description": "Not a complete image, a bad zip or zip entry (nothing stored)"},
    503: {"description": "No production model, the registry or the object store failed"},
}


def _read_files(files: list[UploadFile], limits: UploadLimits) -> list[UploadedFile]:
    read = []
    total = 0
    for index, upload in enumerate(files):
        name = upload.filename or f"file-{index}"
        data = read_bounded(upload.file, limits.max_request_bytes, f"file {name!r}")
        total += len(data)
        if total > limits.max_request_bytes:
            raise UploadRejectedError(
                413, f"the files total more than {limits.max_request_bytes} bytes"
            )
        read.append(UploadedFile(name=name, data=data))
    return read


async def _predict(
    predictor: PredictorDep, registry: RegistryDep, jpegs: list[bytes], choice: ModelChoice
) -> Run:
    """The predictor's run; registry and model failures as HTTP errors."""
    try:
        return await predictor.run(
            registry, jpegs, model_version=choice.model_version, alias=choice.alias
        )
    except ModelNotFoundError as exc:
        code = (
            status.HTTP_404_NOT_FOUND
            if choice.model_version
            else status.HTTP_503_SERVICE_UNAVAILABLE
        )
        raise HTTPException(code, detail=str(exc)) from None
    except ModelError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from None
    except Exception as exc:  # MLflow's own errors (registry unreachable, store broken)
        logger.exception("prediction-batch run failed in the registry or the detector")
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail=f"the model registry failed: {exc}"
        ) from None


def _put_images(objects: ObjectStore, images: list[CheckedImage]) -> set[str]:
    """Store each image under its content key; the keys this call created."""
    return objects.put_new_many({i.object_key: i.jpeg for i in images})


def _record(
    store: AnyStore,
    objects: ObjectStore,
    images: list[CheckedImage],
    *,
    source: str,
    run: Run,
    by: str,
) -> int:
    try:
        created = _put_images(objects, images)
    except ObjectStoreUnavailableError as exc:
        for key in exc.created:
            objects.delete(key)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from None
    rows = [
        BatchImage(i.file_name, i.sha256, i.object_key, len(i.jpeg), i.width, i.height)
        for i in images
    ]
    try:
        with store.connect() as con:
            return batches.create(
                con=con, created_by=by, source=source, images=rows, run=run, now=datetime.now(UTC)
            )
    except BaseException:
        _drop_unreferenced(store, objects, created)
        raise


def _drop_unreferenced(store: AnyStore, objects: ObjectStore, created: set[str]) -> None:
    """Delete the objects a failed upload created, unless a batch recorded meanwhile holds
    one (the same image uploaded at once): no object outlives a batch that failed to be
    recorded, and none a stored batch points at is lost. When the store cannot say, the
    objects are kept (content-addressed: a leftover costs bytes, a deleted one a batch)."""
    try:
        with store.connect() as con:
            held = batches.referenced_objects(con=con, object_keys=sorted(created))
    except Exception:
        logger.warning(
            "a failed upload's %s objects are kept: the store is unreachable", len(created)
        )
        return
    for key in created - held:
        objects.delete(key)


@router.post("", status_code=201, response_model=BatchPublic, responses=UPLOAD_RESPONSES)
async def create_prediction_batch(
    principal: LabelerPrincipal,
    store: StoreDep,
    settings: SettingsDep,
    predictor: PredictorDep,
    registry: RegistryDep,
    files: Annotated[
        list[UploadFile], File(description="Images (JPEG, PNG, WebP, BMP), or one zip of them.")
    ],
    model_version: Annotated[ModelVersion | None, Form()] = None,
    alias: Annotated[Alias | None, Form()] = None,
) -> BatchPublic:
    """Check the images, run the model on them (``production`` unless ``model_version`` or
    ``alias`` says otherwise) and record the batch (role ``labeler``). Limits:
    ``EDGELOOP_UPLOAD_*`` (``edgeloop.uploads.UploadLimits``)."""
    try:
        choice = ModelChoice(model_version=model_version, alias=alias)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from None
    limits = settings.uploads
    try:
        uploaded = await run_in_threadpool(_read_files, files, limits)
        source, images = await run_in_threadpool(read_upload, uploaded, limits)
    except UploadRejectedError as exc:
        raise HTTPException(exc.status_code, detail=str(exc)) from None
    run = await _predict(predictor, registry, [i.jpeg for i in images], choice)
    objects = settings.loop.objects()
    batch_id = await run_in_threadpool(
        _record, store, objects, images, source=source, run=run, by=principal.name
    )
    return await run_in_threadpool(batch_detail, store, batch_id)


@router.get("", response_model=list[BatchSummaryPublic])
def read_prediction_batches(
    _principal: CurrentPrincipal,
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[BatchSummaryPublic]:
    """Prediction batches, newest first."""
    with store.connect() as con:
        rows = batches.recent(con=con, limit=limit, offset=offset)
    return [BatchSummaryPublic(**r) for r in rows]


@router.get(
    "/{batch_id}", response_model=BatchPublic, responses={404: {"description": "No such batch"}}
)
def read_prediction_batch(
    batch_id: BatchId, _principal: CurrentPrincipal, store: StoreDep
) -> BatchPublic:
    """A batch: its images and each run with its detections (bbox xyxy px of the image)."""
    return batch_detail(store, batch_id)


def _stored_jpegs(settings: SettingsDep, images: list[dict[str, Any]]) -> list[bytes]:
    objects = settings.loop.objects()
    try:
        return [objects.get(i["object_key"]) for i in images]
    except ObjectStoreUnavailableError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from None


@router.post(
    "/{batch_id}/runs",
    status_code=201,
    response_model=BatchPublic,
    responses={
        404: {"description": "No such batch or version"},
        409: {"description": "The batch was run with this version already"},
        503: {"description": "No production model, the registry or the object store failed"},
    },
)
async def create_prediction_run(
    batch_id: BatchId,
    body: ModelChoice,
    principal: LabelerPrincipal,
    store: StoreDep,
    settings: SettingsDep,
    predictor: PredictorDep,
    registry: RegistryDep,
) -> BatchPublic:
    """Run another model version on the batch's stored images (role ``labeler``); 409 when
    the batch was run with that version already."""

    def images() -> list[dict[str, Any]]:
        with store.connect() as con:
            if batches.get(con=con, batch_id=batch_id) is None:
                raise HTTPException(
                    status.HTTP_404_NOT_FOUND, detail=f"no prediction batch {batch_id}"
                )
            return batches.images(con=con, batch_id=batch_id)

    stored = await run_in_threadpool(images)
    jpegs = await run_in_threadpool(_stored_jpegs, settings, stored)
    run = await _predict(predictor, registry, jpegs, body)

    def record() -> None:
        with store.connect() as con:
            batches.add_run(
                con=con,
                batch_id=batch_id,
                run=run,
                created_by=principal.name,
                now=datetime.now(UTC),
            )

    try:
        await run_in_threadpool(record)
    except RunExistsError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    return await run_in_threadpool(batch_detail, store, batch_id)


@router.get("/{batch_id}/compare", response_model=ComparisonPublic)
def compare_prediction_runs(
    batch_id: BatchId,
    _principal: CurrentPrincipal,
    store: StoreDep,
    a: Annotated[str, Query(pattern=r"^[0-9]{1,9}$", description="Version A.")],
    b: Annotated[str, Query(pattern=r"^[0-9]{1,9}$", description="Version B.")],
) -> ComparisonPublic:
    """Versions ``a`` and ``b`` on the batch, per image: detections of each, same-class
    pairs with IoU >= 0.5 (matched once each), mean confidence and mean matched IoU."""
    return comparison(store, batch_id, a, b)


@router.post(
    "/{batch_id}/queue",
    response_model=QueuePublic,
    responses={
        404: {"description": "No such batch or run"},
        422: {"description": "A stored image cannot be decoded"},
        503: {"description": "The object store could not be reached"},
    },
)
def queue_prediction_batch(
    batch_id: BatchId,
    principal: LabelerPrincipal,
    store: StoreDep,
    settings: SettingsDep,
    body: QueueCreate | None = None,
) -> QueuePublic:
    """Send the batch's images to the labeling queue (role ``labeler``): each becomes a
    frame of camera ``upload`` (key ``upload-<batch>-<image>``) with the run's detections
    as pre-labels (``model_version``, default the first run), queued once. Sending again
    changes nothing but answers the same items."""
    try:
        sent = send_to_queue(
            store=store,
            loop=settings.loop,
            batch_id=batch_id,
            model_version=body.model_version if body else None,
            queued_by=principal.name,
        )
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=exc.args[0]) from None
    except ObjectStoreUnavailableError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from None
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from None
    return QueuePublic(
        batch_id=batch_id,
        model_version=sent.model_version,
        camera_id=UPLOAD_CAMERA,
        frame_keys=sent.frame_keys,
        item_ids=sent.item_ids,
    )


def _image_row(store: AnyStore, batch_id: int, index: int) -> dict[str, Any]:
    with store.connect() as con:
        row = batches.image(con=con, batch_id=batch_id, image_index=index)
    if row is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail=f"batch {batch_id} has no image {index}"
        )
    return row


ImageIndex = Annotated[int, Path(ge=0, le=100_000, description="Image index in the batch.")]


@router.get(
    "/{batch_id}/images/{index}.jpg", response_class=Response, responses=thumbnail_routes.RESPONSES
)
def read_batch_image(
    batch_id: BatchId,
    index: ImageIndex,
    _principal: CurrentPrincipal,
    store: StoreDep,
    settings: SettingsDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """The stored JPEG (ETag: its sha256; cacheable for a year, it never changes)."""
    row = _image_row(store, batch_id, index)
    etag = f'"{row["sha256"]}"'
    headers = {"ETag": etag, "Cache-Control": thumbnail_routes.CACHE_CONTROL}
    if if_none_match is not None and etag in if_none_match:
        return Response(status_code=304, headers=headers)
    data = _stored_jpegs(settings, [row])[0]
    return Response(data, media_type="image/jpeg", headers=headers)


@router.get(
    "/{batch_id}/images/{index}/thumbnail.jpg",
    response_class=Response,
    responses=thumbnail_routes.RESPONSES,
)
def read_batch_thumbnail(
    batch_id: BatchId,
    index: ImageIndex,
    _principal: CurrentPrincipal,
    store: StoreDep,
    settings: SettingsDep,
    size: thumbnail_routes.SizeQuery = 256,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """The image's thumbnail, made once and stored as the frames' are (``/api/thumbnails``)."""
    row = _image_row(store, batch_id, index)
    return thumbnail_routes.serve(
        store,
        settings,
        what=f"batch {batch_id} image {index}",
        source={"jpeg_path": row["object_key"]},
        spec=thumbnails.ThumbnailSpec(size=size),
        if_none_match=if_none_match,
    )
