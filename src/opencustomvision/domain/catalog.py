"""The domains Azure Custom Vision offers, with Azure's own ids so existing code finds them."""

from __future__ import annotations

from dataclasses import dataclass

CLASSIFICATION = "Classification"
OBJECT_DETECTION = "ObjectDetection"


@dataclass(frozen=True)
class Domain:
    id: str
    name: str
    type: str
    compact: bool  # Azure's compact domains: a small, fast model
    enabled: bool = True

    @property
    def exportable(self) -> bool:
        """Every domain exports here (ml/export), not only the compact ones as on Azure."""
        return True


DOMAINS: tuple[Domain, ...] = (
    Domain("2e37d7fb-3a54-486a-b4d6-cfc369af0018", "General [A2]", CLASSIFICATION, False),
    Domain("a8e3c40f-fb4a-466f-832a-5e457ae4a344", "General [A1]", CLASSIFICATION, False),
    Domain("ee85a74c-405e-4adc-bb47-ffa8ca0c9f31", "General", CLASSIFICATION, False),
    Domain("c151d5b5-dd07-472a-acc8-15d29dea8518", "Food", CLASSIFICATION, False),
    Domain("ca455789-012d-4b50-9fec-5bb63841c793", "Landmarks", CLASSIFICATION, False),
    Domain("b30a91ae-e3c1-4f73-a81e-c270bff27c39", "Retail", CLASSIFICATION, False),
    # Azure keeps Adult listed but closed to new projects.
    Domain("45badf75-3591-4f26-a705-45678d3e9f5f", "Adult", CLASSIFICATION, False, enabled=False),
    Domain("a1db07ca-a19a-4830-bae8-e004a42dc863", "General (compact) [S1]", CLASSIFICATION, True),
    Domain("0732100f-1a38-4e49-a514-c9b44c697ab5", "General (compact)", CLASSIFICATION, True),
    Domain("8882951b-82cd-4c32-970b-d5f8cb8bf6d7", "Food (compact)", CLASSIFICATION, True),
    Domain("b5cfd229-2ac7-4b2b-8d0a-2b0661344894", "Landmarks (compact)", CLASSIFICATION, True),
    Domain("6b4faeda-8396-481b-9f8b-177b9fa3097f", "Retail (compact)", CLASSIFICATION, True),
    Domain("9c616dff-2e7d-ea11-af59-1866da359ce6", "General [A1]", OBJECT_DETECTION, False),
    Domain("da2e3a8a-40a5-4171-82f4-58522f70fbc1", "General", OBJECT_DETECTION, False),
    Domain("1d8ffafe-ec40-4fb2-8f90-72b3b6cecea4", "Logo", OBJECT_DETECTION, False),
    Domain("3780a898-81c3-4516-81ae-3a139614e1f3", "Products on Shelves", OBJECT_DETECTION, False),
    Domain("7ec2ac80-887b-48a6-8df9-8b1357765430", "General (compact) [S1]", OBJECT_DETECTION, True),
    Domain("a27d5ca5-bb19-49d8-a70a-fec086c47f5b", "General (compact)", OBJECT_DETECTION, True),
)

DEFAULT_DOMAIN_ID = "ee85a74c-405e-4adc-bb47-ffa8ca0c9f31"
_BY_ID = {domain.id: domain for domain in DOMAINS}


def find_domain(domain_id: str) -> Domain | None:
    return _BY_ID.get(domain_id.lower())


# Compact domains promise a small, fast model; the others get the most accurate backbone we ship.
# docs/models.md records the measurements behind this choice.
COMPACT_BACKBONE = "efficientnet-lite0"
ACCURATE_BACKBONE = "efficientnet-lite2"


def backbone_for(domain_id: str) -> str:
    domain = find_domain(domain_id)
    return COMPACT_BACKBONE if domain is not None and domain.compact else ACCURATE_BACKBONE


DETECTION_BACKBONE = "efficientnet-lite0"  # docs/detection.md: the most accurate and the fastest measured


def is_detection(domain_id: str) -> bool:
    domain = find_domain(domain_id)
    return domain is not None and domain.type == OBJECT_DETECTION
